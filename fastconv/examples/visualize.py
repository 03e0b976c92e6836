"""Listings 5.25-5.44: what a convnet learns, as three kinds of pictures written into one folder.

    python -m fastconv.examples.visualize --base /tmp/cats_and_dogs_small \\
        --weights ../shared/data/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 --out pictures

* ``activations.png`` — listings 5.25-5.31: every channel of the first eight layers of the trained cats-vs-dogs
  convnet (``--model``, default listing 5.14's ``cats_and_dogs_small_augmented.h5`` in ``--base``) for a test cat;
* ``filters_<layer>.png`` — listings 5.32-5.39: the patterns of the first 64 filters of block1_conv1 ...
  block4_conv1 of the VGG16 base (gradient ascent, 40 steps, 64x64);
* ``grad_cam_convnet_<photo>.png`` — listings 5.40-5.44's class activation map of the convnet's last conv layer
  over a test cat and a test dog; ``grad_cam_vgg16_<photo>.png`` the same for the VGG16-based classifier (the
  base with the classifier that ``vgg16_transfer features`` trained, ``classifier_<preprocessing>.h5``) where
  that file is in ``--base``.

The notes draw Grad-CAM for an elephant with VGG16's ImageNet head; the notop weights here have no head, so the
classifiers are the chapter's own cats-vs-dogs models.
"""

import argparse
import time
from pathlib import Path

from fastconv import layers, models, visualize
from fastconv.applications import VGG16
from fastconv.examples.runs import add_run_arguments, start_run
from fastconv.examples.vgg16_transfer import classifier, image_generator
from fastconv.preprocessing.image import img_to_array, load_img

PHOTOS = ("cats/cat.1700.jpg", "dogs/dog.1500.jpg")  # listing 5.25's cat, and a dog
PATTERN_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")  # listing 5.39's
SIZE = 150


def photo_array(path):
    """(150, 150, 3) float32 RGB values 0-255, as listing 5.25 loads the photo."""
    return img_to_array(load_img(path, target_size=(SIZE, SIZE)))


def convnet_pictures(model, photos, out):
    from fastconv import plot

    cat = photo_array(photos[0]) / 255
    names = [path for path, _ in visualize.flat_layers(model)[:8]]
    written = [plot.activations(model, cat, names, out / "activations.png")]
    for photo in photos:
        heatmap, class_index, score = visualize.grad_cam(model, photo_array(photo) / 255)
        print(f"  convnet on {photo.name}: class {('cat', 'dog')[class_index]} ({score:.3f}), map of {visualize.last_conv_layer(model)}")
        written.append(visualize.save_grad_cam(photo, heatmap, out / f"grad_cam_convnet_{photo.stem}.png"))
    return written


def vgg16_classifier(weights, head_path):
    """The VGG16 base with listing 5.18's classifier on top (the model of listing 5.20, trained on features)."""
    head = classifier()
    head.load_weights(head_path)
    return models.Sequential([VGG16(weights=weights, include_top=False, input_shape=(SIZE, SIZE, 3)), layers.Flatten(), *head.layers])


def vgg16_pictures(args, photos, out):
    written = []
    base = VGG16(weights=args.weights, include_top=False, input_shape=(args.size, args.size, 3))
    for layer_name in args.layers:
        print(f"  filter patterns of {layer_name}: {args.filters} filters, {args.steps} steps of gradient ascent at {args.size}x{args.size}")
        written.append(visualize.save_filter_patterns(base, layer_name, out / f"filters_{layer_name}.png", filters=args.filters, steps=args.steps))
    head_path = Path(args.base) / f"classifier_{args.preprocessing}.h5"
    if not head_path.exists():
        print(f"  no {head_path} (made by `vgg16_transfer features --preprocessing {args.preprocessing}`): no Grad-CAM of VGG16")
        return written
    model = vgg16_classifier(args.weights, head_path)
    scaling = image_generator(args.preprocessing)  # what the classifier was trained on (listing 5.17's generator)
    for photo in photos:
        image = scaling.standardize(photo_array(photo))
        heatmap, class_index, score = visualize.grad_cam(model, image)
        print(f"  VGG16 classifier on {photo.name}: class {('cat', 'dog')[class_index]} ({score:.3f}), map of {visualize.last_conv_layer(model)}")
        written.append(visualize.save_grad_cam(photo, heatmap, out / f"grad_cam_vgg16_{photo.stem}.png"))
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the split of listing 5.4 (its test photos, and the trained models)")
    parser.add_argument("--model", help="the trained cats-vs-dogs convnet (default: cats_and_dogs_small_augmented.h5 in --base)")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' or the path of Keras' VGG16 notop HDF5 file")
    parser.add_argument("--preprocessing", choices=["caffe", "rescale"], default="rescale", help="of the VGG16 classifier")
    parser.add_argument("--out", default="pictures", help="the folder the pictures go into (made if missing)")
    parser.add_argument("--layers", nargs="+", default=list(PATTERN_LAYERS), help="VGG16 layers whose filter patterns to draw")
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--size", type=int, default=64, help="side of the filter patterns (listing 5.39: 64)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), help="test photos for the maps (the first, a cat, for the activations)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    start_run(args)
    base, out = Path(args.base), Path(args.out)
    model_path = Path(args.model) if args.model else base / "cats_and_dogs_small_augmented.h5"
    if not model_path.exists():
        parser.error(f"no trained convnet at {model_path}: train one with `python -m fastconv.examples.cats_dogs --augment` or pass --model")
    photos = [base / "test" / name for name in args.photos]
    missing = [str(photo) for photo in photos if not photo.exists()]
    if missing:
        parser.error(f"{args.base} is not listing 5.4's split: missing {missing}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"cats-vs-dogs convnet ({model_path}):")
    written = convnet_pictures(models.load_model(model_path, compile=False), photos, out)
    print("VGG16:")
    written += vgg16_pictures(args, photos, out)
    print(f"wrote {len(written)} pictures into {out} in {time.perf_counter() - start:.0f} s:")
    for path in written:
        print(f"  {path}")
    return written


if __name__ == "__main__":
    main()
