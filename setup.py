"""Packaging for lemart_hf: LEMaRT pre-training and the SwinIH harmonization model for Hugging Face."""

from setuptools import find_packages, setup

# Opset 23 (the `Attention` op): onnx >= 1.18; its CPU kernel: onnxruntime >= 1.23.
ONNX = ["onnx>=1.18", "onnxscript>=0.7", "onnxruntime>=1.23"]

setup(
    name="lemart_hf",
    version="0.1.0",
    description=(
        "LEMaRT (Label-Efficient Masked Region Transform, CVPR 2023) pre-training and the SwinIH image "
        "harmonization model, as transformers models, datasets transforms and Accelerate scripts."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"lemart_hf": ["metrics/*.py", "py.typed", "released/*/*.json", "released/*/*.safetensors", "sample_composites/*"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0",
        "datasets>=2.19",
        "accelerate>=0.34",
        "safetensors>=0.4",
        "evaluate>=0.4",
        "huggingface-hub>=0.24",
        "kornia>=0.7",
        "numpy",
        "pillow>=10",
        "tqdm",
    ],
    extras_require={
        # scikit-image ships a handful of real photographs in its wheel: the embedded default pre-training set.
        # matplotlib draws the ablations' label-fraction plot (examples/summarize_ablations.py).
        # The onnx extra too, so that CI runs the ONNX tests (its wheels add about 38 MB).
        "dev": ["pytest>=8", "scikit-image>=0.22", "tensorboard", "matplotlib>=3.8", *ONNX],
        # ONNX export (`lemart-harmonize export-onnx`: onnx, onnxscript) and ONNX Runtime inference (lemart_hf.onnx).
        "onnx": ONNX,
        # The web demo (examples/app.py) and its browser test, which drives the system's chromium via playwright.
        "demo": ["gradio>=6", "playwright>=1.40"],
    },
    entry_points={"console_scripts": ["lemart-harmonize=lemart_hf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Processing",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
