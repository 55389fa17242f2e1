//! Image bytes to model input: decode, letterbox, normalise, lay out as CHW.
//!
//! Faithful to Ultralytics' `LetterBox`: scale to fit the model input keeping the aspect ratio
//! (bilinear convolution, which antialiases like PIL; the OpenCV-style variant missed the
//! reference boxes by 5 px), centre the result, pad with gray 114, RGB, values 0..1.
//! The [`Letterbox`] returned per image maps boxes back to original pixels.
//!
//! JPEGs decode with `zune-jpeg` in strict mode (a truncated or corrupt file is an error, not a
//! gray half-image); PNGs with `image`. Dimensions are checked from the header before the pixels
//! are decoded, so a small file claiming a gigapixel image costs nothing.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// Padding value of the letterbox, as Ultralytics uses.
const PAD: f32 = 114.0 / 255.0;

/// Why one image could not be turned into model input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("empty image")]
    Empty,
    #[error("not a JPEG or PNG image")]
    UnknownFormat,
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
    #[error("image is {width}x{height} = {} pixels; the limit is {max_pixels}", *width as u64 * *height as u64)]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
}

/// How an original image sits inside the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub orig_width: u32,
    pub orig_height: u32,
    /// Model pixels per original pixel.
    pub scale: f32,
    pub pad_x: f32,
    pub pad_y: f32,
}

impl Letterbox {
    /// Maps a box from model-input pixels to original pixels, clamped to the image.
    pub fn to_original(&self, b: [f32; 4]) -> [f32; 4] {
        let w = self.orig_width as f32;
        let h = self.orig_height as f32;
        [
            ((b[0] - self.pad_x) / self.scale).clamp(0.0, w),
            ((b[1] - self.pad_y) / self.scale).clamp(0.0, h),
            ((b[2] - self.pad_x) / self.scale).clamp(0.0, w),
            ((b[3] - self.pad_y) / self.scale).clamp(0.0, h),
        ]
    }
}

/// A decoded RGB8 image.
#[derive(Debug)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Decodes a JPEG or PNG to RGB8, refusing images over `max_pixels`.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    match bytes {
        [] => Err(ImageError::Empty),
        [0xFF, 0xD8, ..] => decode_jpeg(bytes, max_pixels),
        [0x89, b'P', b'N', b'G', ..] => decode_png(bytes, max_pixels),
        _ => Err(ImageError::UnknownFormat),
    }
}

fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt("zero width or height".into()));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut decoder = JpegDecoder::new_with_options(std::io::Cursor::new(bytes), options);
    decoder
        .decode_headers()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| ImageError::Corrupt("no JPEG header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_size(width, height, max_pixels)?;
    let pixels = decoder
        .decode()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    if pixels.len() != width as usize * height as usize * 3 {
        return Err(ImageError::Corrupt(
            "decoded size does not match the header".into(),
        ));
    }
    Ok(RgbImage {
        width,
        height,
        pixels,
    })
}

fn decode_png(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let reader =
        image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    check_size(width, height, max_pixels)?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    image::ImageDecoder::set_limits(&mut decoder, limits)
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let rgb = img.into_rgb8();
    Ok(RgbImage {
        width,
        height,
        pixels: rgb.into_raw(),
    })
}

/// Letterboxes `img` into `out`, a `3 x input_h x input_w` CHW slice of the batch tensor.
pub fn letterbox_into(
    img: &RgbImage,
    input_w: u32,
    input_h: u32,
    out: &mut [f32],
) -> Result<Letterbox, ImageError> {
    let plane = (input_w * input_h) as usize;
    debug_assert_eq!(out.len(), 3 * plane);
    // Ultralytics: r = min(new / old); new_unpad = round(old * r); pad split with round(d -/+ 0.1)
    let scale = (input_w as f32 / img.width as f32).min(input_h as f32 / img.height as f32);
    let new_w = ((img.width as f32 * scale).round() as u32).clamp(1, input_w);
    let new_h = ((img.height as f32 * scale).round() as u32).clamp(1, input_h);
    let dw = (input_w - new_w) as f32 / 2.0;
    let dh = (input_h - new_h) as f32 / 2.0;
    let left = (dw - 0.1).round().max(0.0) as u32;
    let top = (dh - 0.1).round().max(0.0) as u32;

    let src = ImageRef::new(img.width, img.height, &img.pixels, PixelType::U8x3)
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let mut resized = Image::new(new_w, new_h, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new()
        .resize(&src, &mut resized, &options)
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;

    // Every element is written exactly once (bars with padding, the rest with pixels), so the
    // caller may hand in a reused buffer with stale contents.
    let (iw, nw, nh, top, left) = (
        input_w as usize,
        new_w as usize,
        new_h as usize,
        top as usize,
        left as usize,
    );
    let rgb = resized.buffer();
    for (c, plane) in out.chunks_exact_mut(plane).enumerate() {
        plane[..top * iw].fill(PAD);
        plane[(top + nh) * iw..].fill(PAD);
        for y in 0..nh {
            let row = &mut plane[(top + y) * iw..(top + y + 1) * iw];
            row[..left].fill(PAD);
            row[left + nw..].fill(PAD);
            let src = &rgb[y * nw * 3..(y + 1) * nw * 3];
            for (dst, px) in row[left..left + nw].iter_mut().zip(src.chunks_exact(3)) {
                *dst = f32::from(px[c]) * (1.0 / 255.0);
            }
        }
    }
    Ok(Letterbox {
        orig_width: img.width,
        orig_height: img.height,
        scale,
        pad_x: left as f32,
        pad_y: top as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(width: u32, height: u32) -> RgbImage {
        RgbImage {
            width,
            height,
            pixels: vec![255; (width * height * 3) as usize],
        }
    }

    #[test]
    fn wide_image_is_centred_vertically_with_gray_bars() {
        let mut out = vec![f32::NAN; 3 * 64 * 64]; // stale contents must all be overwritten
        let lb = letterbox_into(&solid(128, 64), 64, 64, &mut out).expect("letterboxes");
        assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (0.5, 0.0, 16.0));
        assert_eq!(out[0], PAD); // top bar
        assert_eq!(out[20 * 64], 1.0); // image row
        assert_eq!(out[63 * 64], PAD); // bottom bar
        assert!(
            out.iter().all(|v| v.is_finite()),
            "an element was left unwritten"
        );
    }

    #[test]
    fn boxes_map_back_and_clamp_to_the_image() {
        let lb = Letterbox {
            orig_width: 200,
            orig_height: 100,
            scale: 0.5,
            pad_x: 0.0,
            pad_y: 25.0,
        };
        assert_eq!(
            lb.to_original([10.0, 35.0, 20.0, 45.0]),
            [20.0, 20.0, 40.0, 40.0]
        );
        assert_eq!(
            lb.to_original([-5.0, 0.0, 200.0, 90.0]),
            [0.0, 0.0, 200.0, 100.0]
        );
    }

    #[test]
    fn rejects_non_images_and_oversized_headers() {
        assert_eq!(decode(b"", 100).unwrap_err(), ImageError::Empty);
        assert_eq!(
            decode(b"GIF89a", 100).unwrap_err(),
            ImageError::UnknownFormat
        );
        assert!(matches!(
            decode(&[0xFF, 0xD8, 0xFF], 100),
            Err(ImageError::Corrupt(_))
        ));
    }
}
