//! JPEG encoding of decoded pictures with libjpeg-turbo, straight from the decoder's YUV planes.
//!
//! The decoder's I420 planes are compressed as they are (4:2:0, no RGB conversion, no copy),
//! which is what makes 10 sampled frames per second per camera cost ~2% of a core instead of
//! ~25% with a pure-Rust encoder (see the README's performance section). When a maximum size is
//! set, the three planes are scaled separately (bilinear) to the largest even size that fits,
//! keeping the aspect ratio.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use turbojpeg::{Compressor, Subsamp, YuvPlanesImage};

use crate::decode::Picture;

/// A JPEG and the size of the image it holds.
#[derive(Debug, Clone)]
pub struct Jpeg {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    #[error("libjpeg-turbo: {0}")]
    Turbo(#[from] turbojpeg::Error),
    #[error("picture planes too small for {width}x{height} (strides {y_stride}/{uv_stride})")]
    Planes {
        width: usize,
        height: usize,
        y_stride: usize,
        uv_stride: usize,
    },
    #[error("resizing: {0}")]
    Resize(String),
}

/// Largest size that fits in `max_width` x `max_height` keeping the aspect ratio; both even (a
/// 4:2:0 picture has half-size chroma planes) and at least 2. `None` bounds do not constrain.
pub fn fit_within(
    width: usize,
    height: usize,
    max_width: Option<u32>,
    max_height: Option<u32>,
) -> (usize, usize) {
    let mut scale: f64 = 1.0;
    if let Some(mw) = max_width {
        scale = scale.min(f64::from(mw) / width as f64);
    }
    if let Some(mh) = max_height {
        scale = scale.min(f64::from(mh) / height as f64);
    }
    let even = |x: f64| ((x as usize) & !1).max(2);
    if scale >= 1.0 {
        (width & !1, height & !1)
    } else {
        (even(width as f64 * scale), even(height as f64 * scale))
    }
}

/// One per stream: keeps libjpeg-turbo's state and the resize buffers between frames.
pub struct JpegEncoder {
    compressor: Compressor,
    quality: i32,
    max_width: Option<u32>,
    max_height: Option<u32>,
    resizer: Resizer,
    planes: [Vec<u8>; 3],
}

impl std::fmt::Debug for JpegEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JpegEncoder")
            .field("quality", &self.quality)
            .field("max_width", &self.max_width)
            .field("max_height", &self.max_height)
            .finish()
    }
}

impl JpegEncoder {
    pub fn new(
        quality: u8,
        max_width: Option<u32>,
        max_height: Option<u32>,
    ) -> Result<Self, JpegError> {
        let mut compressor = Compressor::new()?;
        compressor.set_quality(i32::from(quality.clamp(1, 100)))?;
        compressor.set_subsamp(Subsamp::Sub2x2)?;
        Ok(Self {
            compressor,
            quality: i32::from(quality),
            max_width,
            max_height,
            resizer: Resizer::new(),
            planes: Default::default(),
        })
    }

    /// Encodes a decoded picture, scaled down first if it exceeds the maximum size. Odd sizes lose
    /// their last row or column (4:2:0 pictures from H.264 practically always have even sizes).
    pub fn encode(&mut self, picture: &Picture<'_>) -> Result<Jpeg, JpegError> {
        let (width, height) = fit_within(
            picture.width,
            picture.height,
            self.max_width,
            self.max_height,
        );
        let planes_ok = picture.width >= 2
            && picture.height >= 2
            && picture.y_stride >= picture.width
            && picture.uv_stride >= picture.width / 2
            && picture.y.len() >= picture.y_stride * (picture.height & !1)
            && picture.u.len() >= picture.uv_stride * (picture.height / 2)
            && picture.v.len() >= picture.uv_stride * (picture.height / 2);
        if !planes_ok {
            return Err(JpegError::Planes {
                width: picture.width,
                height: picture.height,
                y_stride: picture.y_stride,
                uv_stride: picture.uv_stride,
            });
        }
        // Without scaling, the visible area is the picture cropped to even sizes.
        let bytes = if (width, height) == (picture.width & !1, picture.height & !1) {
            let image = YuvPlanesImage {
                y_plane: picture.y,
                u_plane: picture.u,
                v_plane: picture.v,
                width,
                height,
                y_stride: picture.y_stride,
                u_stride: picture.uv_stride,
                v_stride: picture.uv_stride,
                subsamp: Subsamp::Sub2x2,
            };
            self.compressor.compress_yuv_planes_to_vec(&image)?
        } else {
            self.resize_planes(picture, width, height)?;
            let [y, u, v] = &self.planes;
            let image = YuvPlanesImage {
                y_plane: &y[..],
                u_plane: &u[..],
                v_plane: &v[..],
                width,
                height,
                y_stride: width,
                u_stride: width / 2,
                v_stride: width / 2,
                subsamp: Subsamp::Sub2x2,
            };
            self.compressor.compress_yuv_planes_to_vec(&image)?
        };
        Ok(Jpeg {
            bytes,
            width: width as u32,
            height: height as u32,
        })
    }

    fn resize_planes(
        &mut self,
        picture: &Picture<'_>,
        width: usize,
        height: usize,
    ) -> Result<(), JpegError> {
        let sources = [
            (
                picture.y,
                picture.y_stride,
                picture.width,
                picture.height,
                width,
                height,
            ),
            (
                picture.u,
                picture.uv_stride,
                picture.width / 2,
                picture.height / 2,
                width / 2,
                height / 2,
            ),
            (
                picture.v,
                picture.uv_stride,
                picture.width / 2,
                picture.height / 2,
                width / 2,
                height / 2,
            ),
        ];
        for ((plane, stride, src_w, src_h, dst_w, dst_h), out) in
            sources.into_iter().zip(self.planes.iter_mut())
        {
            // The plane is seen as `stride` pixels wide and cropped to the visible width, so
            // the decoder's padded rows need no copy.
            let src = ImageRef::new(stride as u32, src_h as u32, plane, PixelType::U8)
                .map_err(|e| JpegError::Resize(e.to_string()))?;
            out.clear();
            out.resize(dst_w * dst_h, 0);
            let mut dst = Image::from_slice_u8(dst_w as u32, dst_h as u32, out, PixelType::U8)
                .map_err(|e| JpegError::Resize(e.to_string()))?;
            let options = ResizeOptions::new()
                .crop(0.0, 0.0, src_w as f64, src_h as f64)
                .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
            self.resizer
                .resize(&src, &mut dst, &options)
                .map_err(|e| JpegError::Resize(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use turbojpeg::PixelFormat;

    use super::*;

    #[test]
    fn fit_within_keeps_the_aspect_ratio_and_even_sizes() {
        assert_eq!(fit_within(1280, 720, None, None), (1280, 720));
        assert_eq!(fit_within(1280, 720, Some(640), None), (640, 360));
        assert_eq!(fit_within(1280, 720, Some(1000), Some(300)), (532, 300));
        assert_eq!(fit_within(640, 272, Some(1280), Some(720)), (640, 272));
        assert_eq!(fit_within(641, 273, None, None), (640, 272));
        assert_eq!(fit_within(1280, 720, Some(1), Some(1)), (2, 2));
    }

    /// A synthetic 4:2:0 picture with padded strides, like the decoder's.
    fn gradient(width: usize, height: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>, usize, usize) {
        let (ys, uvs) = (width + 32, width / 2 + 16);
        let y = (0..ys * height)
            .map(|i| ((i % ys) * 255 / width.max(1)) as u8)
            .collect();
        let u = vec![100u8; uvs * height / 2];
        let v = vec![150u8; uvs * height / 2];
        (y, u, v, ys, uvs)
    }

    #[test]
    fn encodes_a_padded_picture_and_scales_it_down() {
        let (y, u, v, ys, uvs) = gradient(320, 240);
        let picture = Picture {
            pts_us: 0,
            captured_at_us: 0,
            width: 320,
            height: 240,
            y: &y,
            u: &u,
            v: &v,
            y_stride: ys,
            uv_stride: uvs,
        };
        let full = JpegEncoder::new(85, None, None)
            .unwrap()
            .encode(&picture)
            .unwrap();
        assert_eq!((full.width, full.height), (320, 240));
        let decoded = turbojpeg::decompress(&full.bytes, PixelFormat::RGB).unwrap();
        assert_eq!((decoded.width, decoded.height), (320, 240));

        let small = JpegEncoder::new(85, Some(160), Some(1000))
            .unwrap()
            .encode(&picture)
            .unwrap();
        assert_eq!((small.width, small.height), (160, 120));
        let decoded = turbojpeg::decompress(&small.bytes, PixelFormat::RGB).unwrap();
        assert_eq!((decoded.width, decoded.height), (160, 120));
    }

    #[test]
    fn short_planes_are_an_error_not_a_panic() {
        let picture = Picture {
            pts_us: 0,
            captured_at_us: 0,
            width: 320,
            height: 240,
            y: &[0; 100],
            u: &[0; 10],
            v: &[0; 10],
            y_stride: 320,
            uv_stride: 160,
        };
        let err = JpegEncoder::new(85, None, None)
            .unwrap()
            .encode(&picture)
            .unwrap_err();
        assert!(matches!(err, JpegError::Planes { .. }), "{err}");
    }
}
