//! MP4 file sources.
//!
//! The demuxer reads only the file's index at open (sample offsets, sizes, timestamps); each
//! access unit is then read from disk when it is due, so a long file costs no memory. Samples
//! are read in decode order (B-frames included) and given the presentation time from the
//! composition offsets; length prefixes become start codes and the `avcC` parameter sets are put
//! before every sync sample, so decoding can start at any of them. Audio and other tracks are
//! ignored.
//!
//! Timing: presentation times continue across passes of a looping file (each pass is offset by
//! the duration of the previous ones), so the sampler and the consumers see one timeline. The
//! capture time of a picture is the wall-clock time the stream started plus its presentation
//! time, for a paced file exactly when it is played.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use re_mp4::{Mp4, StsdBoxContent, TrackKind};

use super::{AccessUnit, now_us};
use crate::config::Pace;
use crate::h264;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path}: no H.264 (avc1) video track")]
    NoVideo { path: PathBuf },
    #[error("{path}: reading sample {index}: {message}")]
    Sample {
        path: PathBuf,
        index: usize,
        message: String,
    },
}

/// The H.264 track of an MP4 file, ready to be read sample by sample.
#[derive(Debug)]
pub struct Mp4Video {
    path: PathBuf,
    reader: BufReader<File>,
    samples: Vec<re_mp4::Sample>,
    timescale: u64,
    length_size: usize,
    /// SPS and PPS from `avcC`, in Annex B form, put before every sync sample.
    parameter_sets: Vec<u8>,
    /// Presentation time from the first picture to the end of the last one.
    duration_us: i64,
    pub width: u16,
    pub height: u16,
}

impl Mp4Video {
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let open_err = |message: String| FileError::Open {
            path: path.into(),
            message,
        };
        let file = File::open(path).map_err(|e| open_err(e.to_string()))?;
        let size = file.metadata().map_err(|e| open_err(e.to_string()))?.len();
        let mut reader = BufReader::new(file);
        let mp4 = Mp4::read(&mut reader, size).map_err(|e| open_err(e.to_string()))?;
        let (track, avcc) = mp4
            .tracks()
            .values()
            .filter(|t| t.kind == Some(TrackKind::Video))
            .find_map(|t| match &t.trak(&mp4).mdia.minf.stbl.stsd.contents {
                StsdBoxContent::Avc1(avc1) => Some((t, &avc1.avcc.contents)),
                _ => None,
            })
            .ok_or_else(|| FileError::NoVideo { path: path.into() })?;
        if track.samples.is_empty() || track.timescale == 0 {
            return Err(open_err("the video track has no samples".into()));
        }
        let mut parameter_sets = Vec::new();
        h264::append_nal_units(
            avcc.sequence_parameter_sets
                .iter()
                .chain(&avcc.picture_parameter_sets)
                .map(|nal| nal.bytes.as_slice()),
            &mut parameter_sets,
        );
        let timescale = track.timescale;
        let end = track
            .samples
            .iter()
            .map(|s| s.composition_timestamp + s.duration as i64)
            .max()
            .unwrap_or_default();
        let start = track
            .samples
            .iter()
            .map(|s| s.composition_timestamp)
            .min()
            .unwrap_or_default();
        Ok(Self {
            path: path.into(),
            reader,
            samples: track.samples.clone(),
            timescale,
            length_size: usize::from(avcc.length_size_minus_one & 0x3) + 1,
            parameter_sets,
            duration_us: ticks_to_us(end - start, timescale),
            width: track.width,
            height: track.height,
        })
    }

    /// Samples (pictures) in the track.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn duration_us(&self) -> i64 {
        self.duration_us
    }

    /// Presentation times of all pictures in microseconds, in decode order.
    pub fn presentation_times_us(&self) -> Vec<i64> {
        self.samples
            .iter()
            .map(|s| ticks_to_us(s.composition_timestamp, self.timescale))
            .collect()
    }

    /// Decode time of sample `index`, for pacing.
    fn decode_time_us(&self, index: usize) -> i64 {
        ticks_to_us(self.samples[index].decode_timestamp, self.timescale)
    }

    /// Sample `index` as an Annex B access unit, and its presentation time.
    pub fn read(&mut self, index: usize) -> Result<(Vec<u8>, i64), FileError> {
        let sample = self.samples[index];
        let err = |message: String| FileError::Sample {
            path: self.path.clone(),
            index,
            message,
        };
        let mut raw = vec![0u8; sample.size as usize];
        self.reader
            .seek(SeekFrom::Start(sample.offset))
            .and_then(|_| self.reader.read_exact(&mut raw))
            .map_err(|e| err(e.to_string()))?;
        let mut data = Vec::with_capacity(raw.len() + self.parameter_sets.len() + 16);
        if sample.is_sync {
            data.extend_from_slice(&self.parameter_sets);
        }
        h264::length_prefixed_to_annexb(&raw, self.length_size, &mut data)
            .map_err(|e| err(e.to_string()))?;
        Ok((
            data,
            ticks_to_us(sample.composition_timestamp, self.timescale),
        ))
    }
}

fn ticks_to_us(ticks: i64, timescale: u64) -> i64 {
    (i128::from(ticks) * 1_000_000 / i128::from(timescale.max(1))) as i64
}

/// What the file reader hands the frame thread next.
#[derive(Debug)]
pub enum FileItem {
    Unit(AccessUnit),
    /// One pass is over (the decoder must give out the pictures it holds back); another follows.
    EndOfPass,
    /// The last pass is over.
    End,
}

/// Plays an [`Mp4Video`] once, N times or forever, paced or as fast as possible.
#[derive(Debug)]
pub struct FileReader {
    video: Mp4Video,
    pace: Pace,
    /// 0 = forever.
    loops: u32,
    pass: u32,
    index: usize,
    started: Instant,
    started_at_us: i64,
}

impl FileReader {
    pub fn new(video: Mp4Video, pace: Pace, loops: u32) -> Self {
        Self {
            video,
            pace,
            loops,
            pass: 0,
            index: 0,
            started: Instant::now(),
            started_at_us: now_us(),
        }
    }

    pub fn video(&self) -> &Mp4Video {
        &self.video
    }

    /// The next item; with [`Pace::Realtime`] it waits (sleeping, in steps of at most
    /// `max_wait` so the caller can check for shutdown) until the access unit is due and returns
    /// `Ok(None)` if it is not due yet.
    pub fn next(&mut self, max_wait: Duration) -> Result<Option<FileItem>, FileError> {
        if self.index == self.video.len() {
            self.index = 0;
            self.pass += 1;
            return Ok(Some(if self.loops != 0 && self.pass >= self.loops {
                self.index = self.video.len(); // stays at the end
                self.pass = self.loops;
                FileItem::End
            } else {
                FileItem::EndOfPass
            }));
        }
        let offset_us = i64::from(self.pass) * self.video.duration_us();
        if self.pace == Pace::Realtime {
            let due = Duration::from_micros(
                (offset_us + self.video.decode_time_us(self.index)).max(0) as u64,
            );
            let elapsed = self.started.elapsed();
            if due > elapsed {
                let wait = due - elapsed;
                std::thread::sleep(wait.min(max_wait));
                if wait > max_wait {
                    return Ok(None);
                }
            }
        }
        let (data, pts_us) = self.video.read(self.index)?;
        self.index += 1;
        let pts_us = offset_us + pts_us;
        Ok(Some(FileItem::Unit(AccessUnit {
            data,
            pts_us,
            captured_at_us: self.started_at_us + pts_us,
            discontinuity: None,
        })))
    }
}
