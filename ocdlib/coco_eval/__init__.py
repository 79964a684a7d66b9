"""The COCO keypoint metric: instance rescoring, OKS-NMS and COCOeval, per body part.

It scores predictions already in image pixels; running a model over a validation set
to get them is the engine's (ocdlib/engine/evaluate.py).

The protocol is mmpose's `CocoMetric` / `CocoWholeBodyMetric` (docs/METHOD.md, section
'Conventions'):

1. Rescoring. Instance score = box score x mean of the keypoint scores above
   `keypoint_score_thr` (0.2); 0 when no keypoint passes.
2. OKS-NMS per image at 0.9: instances in decreasing score order, each one
   suppresses the later ones whose OKS with it exceeds the threshold. The OKS
   here uses all keypoints and the mean of the two instances' areas.
3. `predictions.json` in the COCO keypoint results format (the score of each
   keypoint as its third value); for COCO-WholeBody the body goes in
   `keypoints` and the other parts in their own fields (`foot_kpts`, ...).
4. pycocotools' COCOeval (iouType "keypoints") on that very file, with the
   dataset's OKS sigmas.

`results.py` does steps 1 to 3; `scoring.py` step 4, COCO-WholeBody part by part (its
docstring says how that matches the official evaluation), and all four steps at once
(`evaluate_coco`).
"""

from .results import (
    PERSON_CATEGORY_ID,
    Prediction,
    format_results,
    load_results_json,
    oks_iou,
    oks_nms,
    predictions_from_arrays,
    rescore,
)
from .scoring import (
    PART_AVERAGES,
    STAT_NAMES,
    WHOLEBODY,
    evaluate_coco,
    evaluate_results,
    evaluate_results_file,
    load_ground_truth,
    run_cocoeval,
)

__all__ = [
    "PART_AVERAGES",
    "PERSON_CATEGORY_ID",
    "STAT_NAMES",
    "WHOLEBODY",
    "Prediction",
    "evaluate_coco",
    "evaluate_results",
    "evaluate_results_file",
    "format_results",
    "load_ground_truth",
    "load_results_json",
    "oks_iou",
    "oks_nms",
    "predictions_from_arrays",
    "rescore",
    "run_cocoeval",
]
