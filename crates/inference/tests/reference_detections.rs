//! The pipeline of pre-processing, the real model and post-processing reproduces the reference
//! detections of `shared/README.md` (letterbox 640, conf 0.25, class-wise NMS at IoU 0.45),
//! within 2 px and 0.01 confidence. Returned boxes are clamped to the image, so the reference
//! boxes are clamped too before comparing.

use inference::model;
use inference::postprocess::{self, Filter};
use inference::preprocess;

type Ref = (&'static str, f32, [f32; 4]);

const BUS: &[Ref] = &[
    ("person", 0.914, [672.6, 380.0, 809.8, 879.5]),
    ("person", 0.897, [221.1, 407.6, 343.3, 857.3]),
    ("person", 0.895, [50.1, 396.9, 243.3, 904.5]),
    ("bus", 0.824, [34.2, 230.5, 798.4, 771.1]),
    ("person", 0.375, [-3.1, 549.5, 57.7, 871.8]),
];
const ZIDANE: &[Ref] = &[
    ("person", 0.872, [118.9, 197.8, 1114.0, 710.6]),
    ("person", 0.864, [749.7, 42.4, 1134.5, 707.4]),
    ("tie", 0.358, [433.8, 436.2, 524.1, 714.4]),
];

#[test]
fn bus_and_zidane_match_the_reference() {
    let lib =
        std::env::var_os("ORT_DYLIB_PATH").map_or_else(model::default_library_path, Into::into);
    let env = model::init_runtime(&lib).expect("ONNX Runtime loads");
    let (mut session, spec) =
        model::load(&env, &testkit::model("yolov8n.onnx"), 2, None).expect("model loads");
    assert_eq!(
        (spec.input_width, spec.input_height, spec.class_names.len()),
        (640, 640, 80)
    );

    for (file, reference) in [("bus.jpg", BUS), ("zidane.jpg", ZIDANE)] {
        let bytes = std::fs::read(testkit::media(file)).expect("read image");
        let img = preprocess::decode(&bytes, 100_000_000).expect("decodes");
        let mut input = vec![0.0f32; 3 * 640 * 640];
        let lb = preprocess::letterbox_into(&img, 640, 640, &mut input).expect("letterbox");
        let filter = Filter {
            conf: 0.25,
            iou: 0.45,
            max_det: 300,
            allowed: None,
        };
        let dets = model::run(&mut session, &spec, &input, 1, |out| {
            postprocess::detections(out, spec.anchors, &spec.class_names, &lb, &filter)
        })
        .expect("model runs");
        for d in &dets {
            println!(
                "{file}: {} {:.3} [{:.1}, {:.1}, {:.1}, {:.1}]",
                d.class_name, d.confidence, d.x1, d.y1, d.x2, d.y2
            );
        }
        assert_eq!(dets.len(), reference.len(), "{file}: detection count");
        for (d, (class, conf, b)) in dets.iter().zip(reference) {
            let (w, h) = (img.width as f32, img.height as f32);
            let clamped = [
                b[0].clamp(0.0, w),
                b[1].clamp(0.0, h),
                b[2].clamp(0.0, w),
                b[3].clamp(0.0, h),
            ];
            assert_eq!(d.class_name, *class, "{file}");
            assert!(
                (d.confidence - conf).abs() <= 0.01,
                "{file}: {d:?} vs conf {conf}"
            );
            for (got, want) in [d.x1, d.y1, d.x2, d.y2].iter().zip(clamped) {
                assert!((got - want).abs() <= 2.0, "{file}: {d:?} vs {clamped:?}");
            }
        }
    }
}
