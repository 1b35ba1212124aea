"""Speed of cnnkit inspect on CPU: all single-image views, top patches over N images, the report.

    .venv/bin/python bench/inspect_speed.py RUN [--images 10000] [--report-run LENET_RUN]

Targets (issue 5): all views for one image of an MNIST-size model <= 3 s; top patches over
10,000 images <= 30 s; `cnnkit report` on a LeNet run <= 60 s. Times are wall-clock, after one
warm-up call, with torch's default threads.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--report-run", help="a LeNet run for the report timing (default: RUN)")
    args = parser.parse_args()

    from cnnkit.data.shaped import open_for_run
    from cnnkit.inspect import figures
    from cnnkit.inspect.gradcam import gradcam
    from cnnkit.inspect.invariance import image_invariance
    from cnnkit.inspect.patches import top_patches
    from cnnkit.inspect.views import feature_maps, filters, normaliser
    from cnnkit.predict import load

    classifier = load(args.run)
    model, normalise = classifier.model, normaliser(classifier)
    images = open_for_run(classifier.manifest, "mnist").dataset.splits["test"].images  # real MNIST
    image = images[0]

    def single() -> None:
        x = normalise(image[None])
        figures.filters_figure(filters(model))
        figures.features_figure(image, feature_maps(model, x))
        figures.gradcam_figure(image, gradcam(model, x), classifier.class_names)
        figures.invariance_figure(image_invariance(model, image, normalise, 4))

    single()  # warm-up: first calls pay for allocator and font loading
    start = time.perf_counter()
    single()
    single_s = time.perf_counter() - start

    start = time.perf_counter()
    layers = top_patches(model, images[: args.images], normalise)
    figures.patches_figure(layers)
    patches_s = time.perf_counter() - start

    from cnnkit.cli import main as cli

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        cli(
            [
                "report",
                args.report_run or args.run,
                "--data",
                "mnist:test",
                "--out",
                os.path.join(out, "r.html"),
            ]
        )
        report_s = time.perf_counter() - start

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"model: {classifier.manifest['notation']}")
    print(f"all single-image views (filters, features, gradcam, invariance): {single_s:.2f} s")
    print(f"top patches over {len(images[: args.images]):,} MNIST test images: {patches_s:.2f} s")
    print(f"cnnkit report on {args.report_run or args.run} (mnist:test): {report_s:.1f} s")


if __name__ == "__main__":
    main()
