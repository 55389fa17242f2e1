"""Prints a /predict response (JSON on stdin) as a table, one block per frame."""
import json
import sys

response = json.load(sys.stdin)
model = (response.get("model") or {}).get("name", "?")
total_ms = (response.get("timings") or {}).get("total_ms", 0.0)
print(f"stream {response['stream_id']}: {response['total_detections']} detections, model {model}, {total_ms:.0f} ms")
for frame in response["results"]:
    print(f"\nframe {frame['frame_number']} ({frame['width']}x{frame['height']})")
    if frame.get("error"):
        print(f"  error: {frame['error']}")
        continue
    print(f"  {'class':<14}{'conf':>6}  {'x1':>7}{'y1':>7}{'x2':>7}{'y2':>7}")
    for d in frame["detections"]:
        print(f"  {d['class_name']:<14}{d['confidence']:>6.3f}  {d['x1']:>7.1f}{d['y1']:>7.1f}{d['x2']:>7.1f}{d['y2']:>7.1f}")
