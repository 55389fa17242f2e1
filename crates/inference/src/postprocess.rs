//! Model output to detections: decode `[4 + C, A]`, threshold, class-wise NMS, map back.
//!
//! Matches Ultralytics' `non_max_suppression` for detection exports with one label per box:
//! each anchor takes its best class; anchors under the confidence threshold or outside the class
//! allow-list are dropped; boxes of the same class that overlap more than the IoU threshold are
//! suppressed, highest confidence first; at most `max_det` boxes per image survive.

use common::inference_api::Detection;

use crate::preprocess::Letterbox;

/// Ultralytics' cap on candidates entering NMS.
const MAX_NMS_CANDIDATES: usize = 30_000;

/// Thresholds and filters of one request, already validated.
#[derive(Debug, Clone)]
pub struct Filter {
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
    /// `allowed[class_id]`; `None` keeps every class.
    pub allowed: Option<Vec<bool>>,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    xyxy: [f32; 4],
    conf: f32,
    class: usize,
}

/// Detections of one image from its slice of the output tensor, `(4 + classes) x anchors`,
/// row-major (all anchors' centre x, then all centre y, ...).
pub fn detections(
    output: &[f32],
    anchors: usize,
    class_names: &[String],
    letterbox: &Letterbox,
    filter: &Filter,
) -> Vec<Detection> {
    let classes = class_names.len();
    debug_assert_eq!(output.len(), (4 + classes) * anchors);
    let row = |r: usize| &output[r * anchors..(r + 1) * anchors];
    let (cx, cy, w, h) = (row(0), row(1), row(2), row(3));

    // Best class per anchor, scanning the class rows in order: each row is contiguous, so this
    // streams through the output once (the anchor-major scan strides 33 KB per score and cost
    // ~1 ms per image, serial with the model on its worker thread). Strict `>` keeps the first
    // class on ties, as Ultralytics' argmax does.
    let mut best_conf = vec![f32::NEG_INFINITY; anchors];
    let mut best_class = vec![0u32; anchors];
    for c in 0..classes {
        let scores = row(4 + c);
        for ((conf, class), &score) in best_conf.iter_mut().zip(&mut best_class).zip(scores) {
            let better = score > *conf;
            *conf = if better { score } else { *conf };
            *class = if better { c as u32 } else { *class };
        }
    }

    let mut candidates = Vec::new();
    for (a, (&conf, &class)) in best_conf.iter().zip(&best_class).enumerate() {
        let class = class as usize;
        if conf <= filter.conf || filter.allowed.as_ref().is_some_and(|al| !al[class]) {
            continue;
        }
        let (hw, hh) = (w[a] / 2.0, h[a] / 2.0);
        candidates.push(Candidate {
            xyxy: [cx[a] - hw, cy[a] - hh, cx[a] + hw, cy[a] + hh],
            conf,
            class,
        });
    }
    candidates.sort_by(|x, y| y.conf.total_cmp(&x.conf));
    candidates.truncate(MAX_NMS_CANDIDATES);

    let kept = nms(&candidates, filter.iou, filter.max_det);
    kept.into_iter()
        .map(|c| {
            let [x1, y1, x2, y2] = letterbox.to_original(c.xyxy);
            Detection {
                x1,
                y1,
                x2,
                y2,
                confidence: c.conf,
                class_id: c.class as u32,
                class_name: class_names[c.class].clone(),
            }
        })
        .collect()
}

/// Greedy class-wise NMS over candidates sorted by confidence, highest first.
fn nms(sorted: &[Candidate], iou_threshold: f32, max_det: usize) -> Vec<Candidate> {
    let mut kept: Vec<Candidate> = Vec::new();
    for c in sorted {
        if kept.len() >= max_det {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| k.class == c.class && iou(&k.xyxy, &c.xyxy) > iou_threshold);
        if !suppressed {
            kept.push(*c);
        }
    }
    kept
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: Letterbox = Letterbox {
        orig_width: 640,
        orig_height: 640,
        scale: 1.0,
        pad_x: 0.0,
        pad_y: 0.0,
    };

    fn names() -> Vec<String> {
        vec!["person".into(), "car".into()]
    }

    /// Output for anchors given as (cx, cy, w, h, [score per class]).
    fn output(anchors: &[(f32, f32, f32, f32, [f32; 2])]) -> Vec<f32> {
        let n = anchors.len();
        let mut out = vec![0.0; 6 * n];
        for (a, (cx, cy, w, h, s)) in anchors.iter().enumerate() {
            for (r, v) in [*cx, *cy, *w, *h, s[0], s[1]].into_iter().enumerate() {
                out[r * n + a] = v;
            }
        }
        out
    }

    fn filter() -> Filter {
        Filter {
            conf: 0.25,
            iou: 0.45,
            max_det: 300,
            allowed: None,
        }
    }

    #[test]
    fn overlapping_boxes_of_one_class_collapse_to_the_most_confident() {
        let out = output(&[
            (100.0, 100.0, 50.0, 50.0, [0.9, 0.0]),
            (102.0, 101.0, 50.0, 50.0, [0.8, 0.0]),
            (300.0, 300.0, 50.0, 50.0, [0.7, 0.0]),
        ]);
        let d = detections(&out, 3, &names(), &IDENTITY, &filter());
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].confidence, d[0].x1, d[0].y1), (0.9, 75.0, 75.0));
        assert_eq!(d[1].confidence, 0.7);
    }

    #[test]
    fn overlapping_boxes_of_different_classes_both_stay() {
        let out = output(&[
            (100.0, 100.0, 50.0, 50.0, [0.9, 0.0]),
            (100.0, 100.0, 50.0, 50.0, [0.0, 0.8]),
        ]);
        let d = detections(&out, 2, &names(), &IDENTITY, &filter());
        assert_eq!(
            d.iter().map(|d| d.class_name.as_str()).collect::<Vec<_>>(),
            ["person", "car"]
        );
    }

    #[test]
    fn ties_go_to_the_first_class_and_nan_scores_never_win() {
        let out = output(&[
            (100.0, 100.0, 10.0, 10.0, [0.6, 0.6]),
            (300.0, 300.0, 10.0, 10.0, [f32::NAN, 0.7]),
            (500.0, 500.0, 10.0, 10.0, [f32::NAN, f32::NAN]),
        ]);
        let d = detections(&out, 3, &names(), &IDENTITY, &filter());
        assert_eq!(
            d.iter()
                .map(|d| (d.class_name.as_str(), d.confidence))
                .collect::<Vec<_>>(),
            [("car", 0.7), ("person", 0.6)]
        );
    }

    #[test]
    fn threshold_allow_list_and_max_det_apply() {
        let out = output(&[
            (100.0, 100.0, 10.0, 10.0, [0.2, 0.0]),
            (200.0, 200.0, 10.0, 10.0, [0.0, 0.6]),
            (300.0, 300.0, 10.0, 10.0, [0.5, 0.0]),
            (400.0, 400.0, 10.0, 10.0, [0.4, 0.0]),
        ]);
        let mut f = filter();
        assert_eq!(detections(&out, 4, &names(), &IDENTITY, &f).len(), 3);
        f.allowed = Some(vec![true, false]);
        let people = detections(&out, 4, &names(), &IDENTITY, &f);
        assert!(people.iter().all(|d| d.class_name == "person"));
        assert_eq!(people.len(), 2);
        f.max_det = 1;
        assert_eq!(
            detections(&out, 4, &names(), &IDENTITY, &f)[0].confidence,
            0.5
        );
    }
}
