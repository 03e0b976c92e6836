"""fastconv.applications.VGG16: Keras' structure, weight loading without downloads, and features checked
against PyTorch running the same weights on real photos."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fastconv import models, utils
from fastconv.applications import VGG16
from fastconv.applications.vgg16 import MEAN_PIXEL_BGR, WEIGHTS_FILE_NO_TOP, preprocess_input
from fastconv.preprocessing.image import img_to_array, load_img

from conftest import PHOTOS, SHARED_DATA

VGG16_NOTOP = SHARED_DATA / "vgg16" / WEIGHTS_FILE_NO_TOP
needs_weights = pytest.mark.skipif(not VGG16_NOTOP.is_file(), reason=f"the VGG16 weights are not at {VGG16_NOTOP}")


@pytest.fixture
def no_weight_folders(tmp_path, monkeypatch):
    """FASTCONV_HOME and HOME pointing at empty folders: no weights file can be found."""
    monkeypatch.setenv("FASTCONV_HOME", str(tmp_path / "fastconv_home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_conv_base_layers_and_shapes_as_keras():
    conv_base = VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
    names = [layer.name for layer in conv_base.layers[1:]]
    expected = []
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        expected += [f"block{block}_conv{index}" for index in range(1, convs + 1)] + [f"block{block}_pool"]
    assert names == expected
    assert conv_base.name == "vgg16"
    assert conv_base.count_params() == 14_714_688
    assert tuple(conv_base.output_shape) == (None, 4, 4, 512)
    assert conv_base.get_layer("block4_pool").output_shape == (None, 9, 9, 512)


@pytest.mark.parametrize("pooling, layer", [("avg", "GlobalAveragePooling2D"), ("max", "GlobalMaxPooling2D")])
def test_global_pooling_option(pooling, layer):
    conv_base = VGG16(weights=None, include_top=False, input_shape=(64, 64, 3), pooling=pooling)
    assert type(conv_base.layers[-1]).__name__ == layer
    assert conv_base.output_shape == (None, 512)
    assert conv_base.count_params() == 14_714_688


def test_with_top_parameter_count():
    model = VGG16(weights=None, include_top=True, classes=10)
    assert model.input_shape == (None, 224, 224, 3)
    assert [layer.name for layer in model.layers[-4:]] == ["flatten", "fc1", "fc2", "predictions"]
    assert model.output_shape == (None, 10)
    assert model.count_params() == 138_357_544 - 4097 * 990


def test_nested_in_sequential_as_listing_5_20():
    from fastconv import layers, models

    conv_base = VGG16(weights=None, include_top=False, input_shape=(150, 150, 3))
    model = models.Sequential([conv_base, layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dense(1, activation="sigmoid")])
    assert model.count_params() == 16_812_353
    conv_base.trainable = False
    assert sum(w.value.size for w in model.trainable_weights) == 2_097_665


def test_imagenet_weights_missing_says_where_to_put_them(no_weight_folders):
    with pytest.raises(FileNotFoundError) as error:
        VGG16(weights="imagenet", include_top=False, input_shape=(150, 150, 3))
    message = str(error.value)
    assert WEIGHTS_FILE_NO_TOP in message
    assert str(no_weight_folders / "fastconv_home" / "models") in message
    assert str(no_weight_folders / "home" / ".keras" / "models") in message
    assert "download" in message


@needs_weights
def test_a_base_without_input_shape_takes_any_size_as_listing_8_23(tmp_path):
    """``VGG16(weights=..., include_top=False)`` is Keras' (None, None, 3) base: the same features as a fixed-size base
    at any size, in a functional model whose summary shows the called size, saved and loaded in both formats."""
    import fastconv
    from fastconv import layers, models
    from builders import summary_text

    base = VGG16(weights=str(VGG16_NOTOP), include_top=False)
    assert base.input_shape == (None, None, None, 3) and base.output_shape == (None, None, None, 512)
    images = np.random.default_rng(0).uniform(0, 255, (2, 90, 64, 3)).astype(np.float32)
    fixed = VGG16(weights=str(VGG16_NOTOP), include_top=False, input_shape=(90, 64, 3))
    np.testing.assert_array_equal(base.predict(images, verbose=0), fixed.predict(images, verbose=0))
    assert base.predict(images[:, :40, :40], verbose=0).shape == (2, 1, 1, 512)
    base.trainable = False
    inputs = fastconv.Input(shape=(90, 64, 3))
    features = base(inputs)
    model = models.Model(inputs, layers.Dense(1, activation="sigmoid")(layers.Flatten()(features)))
    assert features.shape == (None, 2, 2, 512) and model.output_shape == (None, 1)
    assert "vgg16 (Functional)           (None, 2, 2, 512)" in summary_text(model)
    assert base.input_shape == (None, None, None, 3)  # calling it fixed no size
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        loaded = models.load_model(tmp_path / name)
        assert loaded.get_layer("vgg16").input_shape == (None, None, None, 3)
        np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"weights": "/no/such/file.h5", "include_top": False}, FileNotFoundError, "does not exist"),
        ({"weights": None, "include_top": False, "input_shape": (16, 150, 3)}, ValueError, "at least 32x32"),
        ({"weights": None, "include_top": False, "input_shape": (150, 150)}, ValueError, "(height, width, channels)"),
        ({"weights": "imagenet", "include_top": True, "input_shape": (150, 150, 3)}, ValueError, "(224, 224, 3)"),
        ({"weights": "imagenet", "include_top": True, "classes": 2}, ValueError, "classes must be 1000"),
        ({"weights": None, "include_top": False, "pooling": "mean", "input_shape": (64, 64, 3)}, ValueError, "pooling"),
    ],
)
def test_bad_arguments(kwargs, error, words, no_weight_folders):
    with pytest.raises(error, match=None) as raised:
        VGG16(**kwargs)
    assert words in str(raised.value)


def test_wrong_channel_count_names_the_layer():
    conv_base = VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="block1_conv1|vgg16|input"):
        conv_base.predict(np.ones((1, 32, 32, 1), np.float32))


def test_preprocess_input_is_keras_caffe_mode():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (2, 5, 4, 3))
    before = rgb.copy()
    out = preprocess_input(rgb)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], rgb[..., 2] - 103.939, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(out[..., 1], rgb[..., 1] - 116.779, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(out[..., 2], rgb[..., 0] - 123.68, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(rgb, before)
    np.testing.assert_allclose(preprocess_input(np.uint8([[10, 20, 30]])), [[30, 20, 10] - MEAN_PIXEL_BGR], rtol=1e-6)
    with pytest.raises(ValueError, match=r"3 channels last.*\(2, 4\)"):
        preprocess_input(np.zeros((2, 4)))


@needs_weights
def test_preprocess_input_on_a_symbolic_tensor_is_a_step_of_the_model(tmp_path):
    """Listing 8.23's ``x = preprocess_input(x)`` inside a functional model: the same values as on arrays, the
    gradient flipped back, saved and loaded in both formats; Keras 3's own file (its five operations) reads as one."""
    import fastconv
    from fastconv import layers, models
    from fastconv.backends import to_numpy

    inputs = fastconv.Input(shape=(8, 8, 3))
    x = preprocess_input(inputs)
    assert x.shape == (None, 8, 8, 3) and type(x.layer).__name__ == "CaffePreprocessing"
    model = models.Model(inputs, layers.Dense(1, activation="sigmoid")(layers.Flatten()(layers.Conv2D(2, 3, activation="relu")(x))))
    images = np.random.default_rng(1).uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    step = model.layers[1]
    np.testing.assert_array_equal(to_numpy(step(images)), preprocess_input(images))
    y, cache = step.forward(images)
    grad = np.random.default_rng(2).standard_normal(images.shape).astype(np.float32)
    np.testing.assert_array_equal(to_numpy(step.backward(grad, cache)), grad[..., ::-1])
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        loaded = models.load_model(tmp_path / name)
        assert [type(layer).__name__ for layer in loaded.layers][:2] == ["InputLayer", "CaffePreprocessing"]
        np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    keras_files = Path(__file__).resolve().parent / "keras_files"
    made_by_keras = models.load_model(keras_files / "preprocess_input.keras")
    expected = np.load(keras_files / "preprocess_input.npz")
    assert [type(layer).__name__ for layer in made_by_keras.layers] == ["InputLayer", "CaffePreprocessing", "Conv2D", "Flatten", "Dense"]
    np.testing.assert_allclose(made_by_keras.predict(expected["x"], verbose=0), expected["predict"], rtol=1e-5, atol=1e-6)


@needs_weights
def test_imagenet_weights_found_in_fastconv_home(no_weight_folders):
    models_folder = no_weight_folders / "fastconv_home" / "models"
    models_folder.mkdir(parents=True)
    (models_folder / WEIGHTS_FILE_NO_TOP).symlink_to(VGG16_NOTOP)
    conv_base = VGG16(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    import h5py

    with h5py.File(VGG16_NOTOP, "r") as file:
        for name in ("block1_conv1", "block5_conv3"):
            kernel, bias = conv_base.get_layer(name).get_weights()
            np.testing.assert_array_equal(kernel, file[name][f"{name}/kernel:0"][()])
            np.testing.assert_array_equal(bias, file[name][f"{name}/bias:0"][()])
    by_path = VGG16(weights=str(VGG16_NOTOP), include_top=False, input_shape=(64, 64, 3))
    np.testing.assert_array_equal(by_path.get_layer("block5_conv3").get_weights()[0], conv_base.get_layer("block5_conv3").get_weights()[0])


@needs_weights
@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"the shared photos are not at {PHOTOS}")
def test_features_equal_pytorch_on_real_photos():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install '.[bench]')")
    from fastconv.applications.torch_twin import torch_features, vgg16_base_in_torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    files = [PHOTOS / name for name in ("cat.0.jpg", "dog.0.jpg", "cat.1.jpg")]
    images = np.stack([img_to_array(load_img(path, target_size=(150, 150))) for path in files])
    conv_base = VGG16(weights=str(VGG16_NOTOP), include_top=False, input_shape=(150, 150, 3))
    for x in (preprocess_input(images), images / np.float32(255)):
        features = conv_base.predict(x, batch_size=3)
        expected = torch_features(vgg16_base_in_torch(conv_base), x)
        assert features.shape == expected.shape == (3, 4, 4, 512)
        relative = np.abs(features - expected).max() / np.abs(expected).max()
        assert relative <= 1e-4, relative
        assert np.count_nonzero(expected) > 0.05 * expected.size  # not a trivially-zero comparison


@needs_weights
def test_transfer_learning_flows_run_on_a_small_split(small_split, capsys):
    """Listings 5.17-5.23 end to end on 20 photos: the script's flows run, print accuracies and write their Histories."""
    from fastconv.examples import vgg16_transfer

    common = ["--base", str(small_split), "--weights", str(VGG16_NOTOP), "--epochs", "1"]
    for flow in ("features", "finetune-cached"):
        test_acc = vgg16_transfer.main([flow, *common])
        assert 0.0 <= test_acc <= 1.0
    assert (small_split / "features_caffe" / "train_block4_pool.npy").is_file()
    test_acc = vgg16_transfer.main(["finetune", *common, "--fine-tune-epochs", "1", "--steps", "1",
                                    "--preprocessing", "rescale"])  # fmt: skip
    output = capsys.readouterr().out
    for name in ("vgg16_features_caffe", "vgg16_finetune_cached_caffe", "vgg16_finetune_rescale"):
        assert f"{name}: test_acc" in output
        assert (small_split / f"history_{name}.json").is_file()
    # a stopped run goes on from its last finished epoch: the fine-tuning stage's checkpoint, trainable flags and
    # optimizer state included (block5 trainable, blocks 1-4 frozen)
    vgg16_transfer.main(["finetune", *common, "--fine-tune-epochs", "2", "--steps", "1",
                         "--preprocessing", "rescale", "--resume"])  # fmt: skip
    output = capsys.readouterr().out
    assert "resuming after epoch 1 from" in output and "checkpoint_vgg16_finetune_rescale.h5" in output and "for 1 epochs" in output
    history = json.loads((small_split / "history_vgg16_finetune_rescale.json").read_text())
    assert len(history["loss"]) == 2 and len(json.loads((small_split / "history_vgg16_augmented_rescale.json").read_text())["loss"]) == 1
    resumed = models.load_model(small_split / "checkpoint_vgg16_finetune_rescale.h5")
    flags = {layer.name: layer.trainable for layer in resumed.layers[0].layers}
    assert flags["block5_conv1"] and flags["block5_conv3"] and not flags["block4_conv3"]
    assert resumed.optimizer.iterations == 2
    # the validation logged from cached block4 features is the whole model's on the validation images
    from fastconv.preprocessing.image import ImageDataGenerator

    validation = ImageDataGenerator(rescale=1.0 / 255).flow_from_directory(
        small_split / "validation", target_size=(150, 150), batch_size=20, class_mode="binary", shuffle=False)
    loss, accuracy = resumed.evaluate(validation, steps=len(validation), verbose=0)
    assert history["val_loss"][-1] == pytest.approx(loss, rel=1e-5) and history["val_acc"][-1] == accuracy
    frozen = models.load_model(small_split / "vgg16_augmented_rescale.h5")  # the frozen stage's, from block5's features
    frozen_history = json.loads((small_split / "history_vgg16_augmented_rescale.json").read_text())
    loss, accuracy = frozen.evaluate(validation, steps=len(validation), verbose=0)
    assert frozen_history["val_loss"][-1] == pytest.approx(loss, rel=1e-5) and frozen_history["val_acc"][-1] == accuracy


@needs_weights
def test_second_edition_flows_run_on_a_small_split_and_resume(small_split, capsys):
    """Listings 8.6-8.29 at 80x80 (the smallest the convnet takes) on 20 photos: each flow trains, keeps its best model (listing 8.11's checkpoint),
    tests it, and --resume goes on after the last finished epoch."""
    from fastconv.examples import second_edition

    common = ["--base", str(small_split), "--weights", str(VGG16_NOTOP), "--image-size", "80"]
    for flow in ("scratch", "augmented", "features", "features-augmented", "finetune"):
        history, test_acc = second_edition.main([flow, *common, "--epochs", "1"])
        assert len(history["loss"]) == 1 and 0.0 <= test_acc <= 1.0
        assert (small_split / second_edition.FLOWS[flow][0]).is_file() and (small_split / f"history_{flow}.json").is_file()
    tuned = models.load_model(small_split / "checkpoint_finetune.h5").get_layer("vgg16")
    assert [layer.name for layer in tuned.layers[1:] if layer.trainable] == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]
    # the VGG16 flows validate on features the frozen layers computed once: what they log is the whole model's figure
    validation = utils.image_dataset_from_directory(small_split / "validation", image_size=(80, 80), shuffle=False)
    for flow in ("features-augmented", "finetune"):
        logged = json.loads((small_split / f"history_{flow}.json").read_text())
        loss, accuracy = models.load_model(small_split / f"checkpoint_{flow}.h5").evaluate(validation, verbose=0)
        assert logged["val_loss"][-1] == pytest.approx(loss, rel=1e-5) and logged["val_accuracy"][-1] == pytest.approx(accuracy)
    history, _ = second_edition.main(["scratch", *common, "--epochs", "2", "--resume"])
    assert len(history["loss"]) == 2
    output = capsys.readouterr().out
    assert "resuming after epoch 1 from" in output and "features of 20 images" in output

