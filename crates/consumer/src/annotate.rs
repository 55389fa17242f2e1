//! Drawing detections on a frame: a box in the class's colour and a filled label with the class
//! name and confidence, both clamped to the image; then JPEG again.
//!
//! The font is DejaVu Sans, embedded by the `dejavu` crate (no font file in the repository).
//! Colours are Ultralytics' 20-colour palette by class id, so a class looks the same in every
//! image. Decoding and encoding use libjpeg-turbo; this is CPU work for a blocking thread.

use std::sync::OnceLock;

use ab_glyph::{FontRef, PxScale};
use common::inference_api::Detection;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;
use turbojpeg::{PixelFormat, Subsamp};

/// Ultralytics' palette (`ultralytics.utils.plotting.Colors`).
const PALETTE: [[u8; 3]; 20] = [
    [255, 56, 56],
    [255, 157, 151],
    [255, 112, 31],
    [255, 178, 29],
    [207, 210, 49],
    [72, 249, 10],
    [146, 204, 23],
    [61, 219, 134],
    [26, 147, 52],
    [0, 212, 187],
    [44, 153, 168],
    [0, 194, 255],
    [52, 69, 147],
    [100, 115, 255],
    [0, 24, 236],
    [132, 56, 255],
    [82, 0, 133],
    [203, 56, 255],
    [255, 149, 200],
    [255, 55, 199],
];

#[derive(Debug, thiserror::Error)]
pub enum AnnotateError {
    #[error("JPEG: {0}")]
    Jpeg(#[from] turbojpeg::Error),
    #[error("decoded image has an impossible size")]
    Size,
    #[error("embedded font: {0}")]
    Font(String),
}

fn font() -> Result<&'static FontRef<'static>, AnnotateError> {
    static FONT: OnceLock<Result<FontRef<'static>, String>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(dejavu::sans::regular()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| AnnotateError::Font(e.clone()))
}

pub fn class_colour(class_id: u32) -> Rgb<u8> {
    Rgb(PALETTE[class_id as usize % PALETTE.len()])
}

/// Black or white, whichever reads better on `background`.
fn text_colour(background: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = background.0;
    let luma = 0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b);
    if luma > 150.0 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    }
}

/// Draws `detections` on `image` in place.
pub fn draw(image: &mut RgbImage, detections: &[Detection]) -> Result<(), AnnotateError> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Ok(());
    }
    let font = font()?;
    // Line width and text size grow with the image, as Ultralytics' plots do.
    let thickness = ((w + h) as f32 / 600.0).round().max(1.0) as i32;
    let scale = PxScale::from((h as f32 / 40.0).clamp(11.0, 32.0));
    for d in detections {
        let colour = class_colour(d.class_id);
        let clamp_x = |x: f32| (x.round() as i64).clamp(0, i64::from(w) - 1) as i32;
        let clamp_y = |y: f32| (y.round() as i64).clamp(0, i64::from(h) - 1) as i32;
        let (x1, y1, x2, y2) = (clamp_x(d.x1), clamp_y(d.y1), clamp_x(d.x2), clamp_y(d.y2));
        if x2 <= x1 || y2 <= y1 {
            continue;
        }
        for t in 0..thickness {
            let (left, top) = (x1 + t, y1 + t);
            let (width, height) = (x2 - x1 - 2 * t, y2 - y1 - 2 * t);
            if width <= 0 || height <= 0 {
                break;
            }
            imageproc::drawing::draw_hollow_rect_mut(
                image,
                Rect::at(left, top).of_size(width as u32 + 1, height as u32 + 1),
                colour,
            );
        }
        let label = format!("{} {:.2}", d.class_name, d.confidence);
        let (tw, th) = text_size(scale, font, &label);
        let pad = 2;
        let (lw, lh) = (tw as i32 + 2 * pad, th as i32 + 2 * pad);
        // Above the box when there is room, else inside it; never outside the image.
        let ly = if y1 - lh >= 0 { y1 - lh } else { y1 };
        let lx = x1.min(w as i32 - lw).max(0);
        draw_filled_rect_mut(
            image,
            Rect::at(lx, ly).of_size(lw.max(1) as u32, lh.max(1) as u32),
            colour,
        );
        draw_text_mut(
            image,
            text_colour(colour),
            lx + pad,
            ly + pad,
            scale,
            font,
            &label,
        );
    }
    Ok(())
}

/// Decodes `jpeg`, draws `detections`, encodes at `quality`.
pub fn annotate_jpeg(
    jpeg: &[u8],
    detections: &[Detection],
    quality: u8,
) -> Result<Vec<u8>, AnnotateError> {
    let decoded = turbojpeg::decompress(jpeg, PixelFormat::RGB)?;
    let mut image = RgbImage::from_raw(decoded.width as u32, decoded.height as u32, decoded.pixels)
        .ok_or(AnnotateError::Size)?;
    draw(&mut image, detections)?;
    let out = turbojpeg::Image {
        pixels: image.as_raw().as_slice(),
        width: image.width() as usize,
        pitch: image.width() as usize * 3,
        height: image.height() as usize,
        format: PixelFormat::RGB,
    };
    Ok(turbojpeg::compress(out, i32::from(quality), Subsamp::Sub2x2)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection(x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection {
            x1,
            y1,
            x2,
            y2,
            confidence: 0.87,
            class_id: 0,
            class_name: "person".into(),
        }
    }

    #[test]
    fn draws_the_box_in_the_class_colour_and_a_label() {
        let mut image = RgbImage::from_pixel(200, 120, Rgb([0, 0, 0]));
        draw(&mut image, &[detection(40.0, 50.0, 150.0, 110.0)]).unwrap();
        assert_eq!(*image.get_pixel(40, 80), class_colour(0), "left edge");
        assert_eq!(*image.get_pixel(100, 110), class_colour(0), "bottom edge");
        assert_eq!(
            *image.get_pixel(100, 80),
            Rgb([0, 0, 0]),
            "inside untouched"
        );
        // The label sits above the box, filled in the class colour with text in it.
        let label_pixels = (40..150)
            .flat_map(|x| (30..50).map(move |y| (x, y)))
            .filter(|&(x, y)| *image.get_pixel(x, y) == class_colour(0))
            .count();
        assert!(label_pixels > 200, "filled label: {label_pixels} pixels");
    }

    #[test]
    fn boxes_outside_the_image_are_clamped_not_a_panic() {
        let mut image = RgbImage::from_pixel(64, 48, Rgb([0, 0, 0]));
        draw(
            &mut image,
            &[
                detection(-50.0, -20.0, 500.0, 900.0),
                detection(f32::NAN, 0.0, 10.0, 10.0),
            ],
        )
        .unwrap();
        assert_eq!(*image.get_pixel(0, 30), class_colour(0));
        assert_eq!(*image.get_pixel(63, 30), class_colour(0));
    }

    #[test]
    fn annotated_jpeg_round_trips_and_changes_where_boxes_are() {
        let image = RgbImage::from_pixel(320, 240, Rgb([90, 90, 90]));
        let plain = turbojpeg::compress(
            turbojpeg::Image {
                pixels: image.as_raw().as_slice(),
                width: 320,
                pitch: 960,
                height: 240,
                format: PixelFormat::RGB,
            },
            90,
            Subsamp::Sub2x2,
        )
        .unwrap();
        let annotated = annotate_jpeg(&plain, &[detection(10.0, 60.0, 200.0, 200.0)], 90).unwrap();
        let back = turbojpeg::decompress(&annotated, PixelFormat::RGB).unwrap();
        assert_eq!((back.width, back.height), (320, 240));
        let at = |x: usize, y: usize| &back.pixels[(y * 320 + x) * 3..(y * 320 + x) * 3 + 3];
        assert!(
            at(10, 120)[0] as i32 - at(10, 120)[1] as i32 > 50,
            "a 1-px box edge survives JPEG as red-ish: {:?}",
            at(10, 120)
        );
        assert!(
            (at(300, 20)[0] as i32 - 90).abs() < 10,
            "elsewhere unchanged"
        );
    }
}
