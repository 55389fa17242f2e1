//! Which frames of a batch are drawn and uploaded as images (`IMAGE_POLICY`); every frame's
//! detections go to the JSON whatever is drawn.

use clap::ValueEnum;
use common::inference_api::FrameResult;

/// Which frames of a batch are drawn and uploaded as images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagePolicy {
    /// Frames with detections, and at least one frame per batch (the first, if none has any).
    Detections,
    All,
    /// JSON only.
    None,
}

impl ImagePolicy {
    /// Indexes of the frames to draw.
    pub fn frames_to_draw(self, results: &[FrameResult]) -> Vec<usize> {
        match self {
            Self::All => (0..results.len())
                .filter(|&i| results[i].error.is_none())
                .collect(),
            Self::None => Vec::new(),
            Self::Detections => {
                let with: Vec<usize> = (0..results.len())
                    .filter(|&i| results[i].error.is_none() && !results[i].detections.is_empty())
                    .collect();
                if with.is_empty() {
                    results
                        .iter()
                        .position(|r| r.error.is_none())
                        .into_iter()
                        .collect()
                } else {
                    with
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use common::inference_api::Detection;

    use super::*;

    fn result(detections: usize, error: bool) -> FrameResult {
        FrameResult {
            frame_number: 0,
            width: 2,
            height: 2,
            detections: (0..detections)
                .map(|_| Detection {
                    x1: 0.0,
                    y1: 0.0,
                    x2: 1.0,
                    y2: 1.0,
                    confidence: 0.5,
                    class_id: 0,
                    class_name: "person".into(),
                })
                .collect(),
            inference_time_ms: 1.0,
            error: error.then(|| "corrupt".to_string()),
        }
    }

    #[test]
    fn default_policy_draws_frames_with_detections() {
        let results = [
            result(0, false),
            result(2, false),
            result(1, true),
            result(1, false),
        ];
        assert_eq!(ImagePolicy::Detections.frames_to_draw(&results), [1, 3]);
        assert_eq!(
            ImagePolicy::All.frames_to_draw(&results),
            [0, 1, 3],
            "never a frame that failed"
        );
        assert!(ImagePolicy::None.frames_to_draw(&results).is_empty());
    }

    #[test]
    fn default_policy_draws_at_least_one_frame_per_batch() {
        let results = [result(0, true), result(0, false), result(0, false)];
        assert_eq!(ImagePolicy::Detections.frames_to_draw(&results), [1]);
        let all_failed = [result(0, true)];
        assert!(
            ImagePolicy::Detections
                .frames_to_draw(&all_failed)
                .is_empty()
        );
    }
}
