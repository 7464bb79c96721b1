"""DVC stage evaluate: every style's best model on the test set, once; agreement; confusion.

Each style's figures go to one file, `metrics/<style>.json`: its test score beside the summary of
its curves, so that `dvc metrics show` has one row per style with the same columns.
"""

from trainstyles.pipeline.data import load_split
from trainstyles.pipeline.outputs import (
    atomic_dir,
    read_history,
    style_metrics,
    write_csv,
    write_json,
)
from trainstyles.pipeline.params import STYLES, load_params
from trainstyles.pipeline.stage import METRICS_DIR, MODELS_DIR, PLOTS_DIR, SPLIT_DIR, run_stage


def main() -> str:
    # Params that do not validate are said in one line before TensorFlow takes its seconds to
    # load, as the trainers do.
    params = load_params()
    from trainstyles.pipeline.determinism import deterministic_kernels  # noqa: PLC0415
    from trainstyles.pipeline.evaluation import (  # noqa: PLC0415
        agreement,
        confusion_rows,
        identical_weights,
        load_model,
        predict,
        score_logits,
    )
    from trainstyles.pipeline.gpu import use_devices  # noqa: PLC0415

    deterministic_kernels(params.train.intra_op_threads)  # the models' own, as trained
    use_devices(params.train.device)
    test = load_split(SPLIT_DIR / "test")
    models = {style: load_model(MODELS_DIR / f"{style}.keras") for style in STYLES}
    results, predictions = {}, {}
    for style, model in models.items():
        logits = predict(model, test)
        curves = read_history(PLOTS_DIR / f"{style}.csv")
        results[style] = score_logits(logits, test) | style_metrics(curves)
        predictions[style] = logits.argmax(axis=1)
    for style, figures in results.items():
        write_json(figures, METRICS_DIR / f"{style}.json")
    write_json(
        {"agreement": agreement(predictions), "identical_weights": identical_weights(models)},
        METRICS_DIR / "comparison.json",
    )
    with atomic_dir(PLOTS_DIR / "confusion") as confusion:
        for style, predicted in predictions.items():
            write_csv(confusion_rows(test.labels, predicted), confusion / f"{style}.csv")
    accuracies = ", ".join(f"{style} {r['test_accuracy']:.4f}" for style, r in results.items())
    return (
        f"tested {len(models)} models on {len(test)} images: {accuracies}; wrote {METRICS_DIR}/"
        "{<style>,comparison}.json"
    )


if __name__ == "__main__":
    run_stage(main, timed=True)
