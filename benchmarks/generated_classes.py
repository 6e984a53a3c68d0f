"""The generated dataset the method benchmarks run on: 10 classes of 300 random 1×28×28 images."""
import torch

from medistill.data import ImageDataset

CLASSES, PER_CLASS = 10, 300


def generated_classes(classes: int = CLASSES, per_class: int = PER_CLASS) -> ImageDataset:
    """Standard-normal images (classes·per_class, 1, 28, 28), seed 0; val/test are 10 of them."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(classes * per_class, 1, 28, 28, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ImageDataset(name="generated", train_images=images, train_labels=labels, val_images=images[:10],
                        val_labels=labels[:10], test_images=images[:10], test_labels=labels[:10],
                        mean=torch.zeros(1), std=torch.ones(1), class_names=[str(c) for c in range(classes)],
                        md5="generated")
