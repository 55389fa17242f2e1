//! The pipeline of pre-processing, the real model and post-processing reproduces the reference
//! detections of `shared/README.md` (letterbox 640, conf 0.25, class-wise NMS at IoU 0.45),
//! within 2 px and 0.01 confidence. Returned boxes are clamped to the image, and so is the one
//! reference box that reaches outside it (see `support::BUS`).

mod support;

use inference::model;
use inference::postprocess::{self, Filter};
use inference::preprocess;
use support::{BUS, ZIDANE, assert_reference};

#[test]
fn bus_and_zidane_match_the_reference() {
    let env =
        model::init_runtime(&model::default_library_path_or_env()).expect("ONNX Runtime loads");
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
        let out = model::run(&mut session, &spec, &input, 1).expect("model runs");
        let dets =
            postprocess::detections(out.data(), spec.anchors, &spec.class_names, &lb, &filter);
        for d in &dets {
            println!(
                "{file}: {} {:.3} [{:.1}, {:.1}, {:.1}, {:.1}]",
                d.class_name, d.confidence, d.x1, d.y1, d.x2, d.y2
            );
        }
        assert_reference(&dets, reference);
    }
}
