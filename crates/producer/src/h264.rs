//! H.264 bitstream helpers: what the decoder needs to see, whatever the container said.
//!
//! MP4 stores NAL units with big-endian length prefixes and the parameter sets (SPS, PPS) once,
//! in the `avcC` box; the decoder wants an Annex B byte stream (start codes) with the parameter
//! sets in band. RTSP via `retina`'s `FrameFormat::SIMPLE` already delivers Annex B.

/// The four-byte Annex B start code put before every NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// NAL unit type of an IDR slice: a picture decodable on its own, where recovery can restart.
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum H264Error {
    #[error("NAL length prefix of {0} bytes is not 1, 2 or 4")]
    LengthSize(usize),
    #[error("NAL unit at byte {offset} claims {claimed} bytes, only {left} left in the sample")]
    Truncated {
        offset: usize,
        claimed: usize,
        left: usize,
    },
}

/// Appends the NAL units of one length-prefixed (MP4) sample to `out` in Annex B form.
pub fn length_prefixed_to_annexb(
    sample: &[u8],
    length_size: usize,
    out: &mut Vec<u8>,
) -> Result<(), H264Error> {
    if !matches!(length_size, 1 | 2 | 4) {
        return Err(H264Error::LengthSize(length_size));
    }
    let mut pos = 0;
    while pos < sample.len() {
        let left = sample.len() - pos;
        if left < length_size {
            return Err(H264Error::Truncated {
                offset: pos,
                claimed: length_size,
                left,
            });
        }
        let len = sample[pos..pos + length_size]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        pos += length_size;
        let left = sample.len() - pos;
        if len > left {
            return Err(H264Error::Truncated {
                offset: pos - length_size,
                claimed: len,
                left,
            });
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(&sample[pos..pos + len]);
        pos += len;
    }
    Ok(())
}

/// Appends raw NAL units (e.g. SPS and PPS from `avcC`) to `out` with start codes.
pub fn append_nal_units<'a>(nals: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    for nal in nals {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    }
}

/// The NAL units of an Annex B buffer (without start codes), in order.
pub fn nal_units(annexb: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    // Start of every NAL unit: the byte after each 00 00 01 (a four-byte code ends the same way).
    let starts: Vec<usize> = annexb
        .windows(3)
        .enumerate()
        .filter(|(_, w)| w == &[0, 0, 1])
        .map(|(i, _)| i + 3)
        .collect();
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&next| {
            // Up to the next start code, without its leading zero bytes.
            let mut end = next - 3;
            while end > 0 && annexb[end - 1] == 0 {
                end -= 1;
            }
            end
        })
        .chain(std::iter::once(annexb.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter(|(start, end)| start < end)
        .map(move |(start, end)| &annexb[start..end])
}

/// The NAL unit types in an Annex B buffer, in order.
pub fn nal_types(annexb: &[u8]) -> impl Iterator<Item = u8> + '_ {
    nal_units(annexb).map(|nal| nal[0] & 0x1f)
}

/// The sequence parameter set in an access unit, if it carries one.
pub fn sps(annexb: &[u8]) -> Option<&[u8]> {
    nal_units(annexb).find(|nal| nal[0] & 0x1f == NAL_SPS)
}

/// Whether the access unit holds an IDR slice, i.e. decoding can (re)start here.
pub fn contains_idr(annexb: &[u8]) -> bool {
    nal_types(annexb).any(|t| t == NAL_IDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_length_prefixes_to_start_codes() {
        let sample = [0, 0, 0, 2, 0x65, 0xAA, 0, 0, 0, 1, 0x41];
        let mut out = Vec::new();
        length_prefixed_to_annexb(&sample, 4, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xAA, 0, 0, 0, 1, 0x41]);
        assert_eq!(nal_types(&out).collect::<Vec<_>>(), [5, 1]);
        assert!(contains_idr(&out));
    }

    #[test]
    fn two_byte_prefixes_work_too() {
        let mut out = Vec::new();
        length_prefixed_to_annexb(&[0, 1, 0x41], 2, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x41]);
        assert!(!contains_idr(&out));
    }

    #[test]
    fn a_length_past_the_end_is_an_error_not_a_panic() {
        let err = length_prefixed_to_annexb(&[0, 0, 0, 9, 0x65], 4, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err,
            H264Error::Truncated {
                offset: 0,
                claimed: 9,
                left: 1
            }
        );
        let err = length_prefixed_to_annexb(&[0, 0], 4, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, H264Error::Truncated { .. }));
        assert_eq!(
            length_prefixed_to_annexb(&[], 3, &mut Vec::new()),
            Err(H264Error::LengthSize(3))
        );
    }

    #[test]
    fn nal_units_are_split_at_three_and_four_byte_start_codes() {
        let stream = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let units: Vec<&[u8]> = nal_units(&stream).collect();
        assert_eq!(
            units,
            [&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]
        );
        assert_eq!(sps(&stream), Some(&[0x67, 1, 2][..]));
        assert_eq!(sps(&[0, 0, 1, 0x41, 9]), None);
    }

    #[test]
    fn parameter_sets_get_start_codes() {
        let mut out = Vec::new();
        append_nal_units([&[0x67u8, 1][..], &[0x68u8, 2][..]], &mut out);
        assert_eq!(nal_types(&out).collect::<Vec<_>>(), [NAL_SPS, NAL_PPS]);
    }
}
