//! Where results go in S3: deterministic keys, so a redelivered batch overwrites its own
//! objects instead of duplicating them.
//!
//! - `annotated/{stream}/{yyyy}/{mm}/{dd}/{hh}/{frame_seq:012}-{session}.jpg`
//! - `results/{stream}/{yyyy}/{mm}/{dd}/{hh}/batch-{batch_seq:012}-{session}.json`
//!
//! The hour is the UTC capture hour (of the frame; of the batch's first frame for the JSON).
//! `{session}` is the first 8 hex digits of the producer session: sequence numbers start again
//! at 0 when a producer restarts, and without it a restart within the hour would overwrite the
//! earlier run's objects. Keys sort by sequence number within an hour.

use chrono::{DateTime, Utc};
use common::{Frame, FrameBatch};

fn hour_path(at: DateTime<Utc>) -> String {
    at.format("%Y/%m/%d/%H").to_string()
}

fn session(batch: &FrameBatch) -> String {
    batch.producer_session.simple().to_string()[..8].to_string()
}

/// The key of a frame's annotated image.
pub fn image_key(batch: &FrameBatch, frame: &Frame) -> String {
    format!(
        "annotated/{}/{}/{:012}-{}.jpg",
        batch.stream_id,
        hour_path(frame.captured_at),
        frame.seq,
        session(batch)
    )
}

/// The key of a batch's JSON results.
pub fn results_key(batch: &FrameBatch) -> String {
    let at = batch
        .frames
        .first()
        .map_or_else(Utc::now, |f| f.captured_at);
    format!(
        "results/{}/{}/batch-{:012}-{}.json",
        batch.stream_id,
        hour_path(at),
        batch.batch_seq,
        session(batch)
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::TimeZone;
    use common::StreamId;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn keys_are_deterministic_and_dated_by_capture_hour() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 7, 59, 59).unwrap();
        let batch = FrameBatch {
            stream_id: StreamId::new("cam-1").unwrap(),
            producer_session: Uuid::parse_str("0123456789abcdef0123456789abcdef").unwrap(),
            batch_seq: 42,
            partial: false,
            frames: vec![Frame {
                seq: 1050,
                pts_us: 0,
                captured_at: at,
                width: 2,
                height: 2,
                jpeg: Bytes::new(),
            }],
        };
        assert_eq!(
            image_key(&batch, &batch.frames[0]),
            "annotated/cam-1/2026/11/22/07/000000001050-01234567.jpg"
        );
        assert_eq!(
            results_key(&batch),
            "results/cam-1/2026/11/22/07/batch-000000000042-01234567.json"
        );
        assert_eq!(results_key(&batch), results_key(&batch.clone()));
    }
}
