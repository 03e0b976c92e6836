"""Weights and model files keep a user's data: copies in, frozen layers frozen, optimizer state, all or nothing."""

import os

import h5py
import numpy as np
import pytest

import fastconv
from fastconv import layers, models, optimizers
from fastconv.utils import set_random_seed, to_categorical

from builders import functional_8_1, small_classifier, summary_text, tiny_data, total_params
from conftest import unfreeze_from


pytestmark = pytest.mark.usefixtures("fresh_names")


def small_model(name=None):
    return models.Sequential(
        [layers.Conv2D(3, (3, 3), activation="relu", input_shape=(6, 6, 2)), layers.Flatten(), layers.Dense(2, activation="softmax")],
        name=name,
    )


def data(n=16):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 6, 6, 2)).astype(np.float32), to_categorical(rng.integers(0, 2, n), 2)


# --- 1. a user's arrays are copied, never shared -------------------------------------


def test_set_weights_copies_so_training_never_changes_the_callers_arrays():
    x, y = data()
    first, second = small_model(), small_model()
    arrays = [np.ascontiguousarray(w, dtype=np.float32) for w in first.get_weights()]
    kept = [a.copy() for a in arrays]
    first.set_weights(arrays)
    second.set_weights(arrays)  # the same arrays given to two models
    first.compile(optimizer=optimizers.SGD(0.5), loss="categorical_crossentropy")
    first.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for array, original in zip(arrays, kept):
        np.testing.assert_array_equal(array, original)  # the caller's arrays are untouched
    for weight, original in zip(second.get_weights(), kept):
        np.testing.assert_array_equal(weight, original)  # and the other model did not train
    moved = [np.abs(w - a).max() for w, a in zip(first.get_weights(), arrays)]
    assert max(moved) > 0, "an SGD step moved the weights by zero relative to the array passed"


def test_every_path_that_stores_an_array_copies_it():
    layer = layers.Dense(2, input_shape=(3,))
    model = models.Sequential([layer])
    kernel, bias = np.ones((3, 2), np.float32), np.zeros(2, np.float32)  # float32 and contiguous: no conversion copies them
    layer.set_weights([kernel, bias])
    assert not np.shares_memory(layer.kernel.value, kernel) and not np.shares_memory(layer.bias.value, bias)
    model.set_weights([kernel, bias])
    assert not np.shares_memory(layer.kernel.value, kernel)
    layer.kernel.assign(kernel)
    assert not np.shares_memory(layer.kernel.value, kernel)
    given = np.full((3, 2), 7, np.float32)
    custom = layers.Dense(2, kernel_initializer=lambda shape: given, input_shape=(3,))
    models.Sequential([custom])
    assert not np.shares_memory(custom.kernel.value, given)


# --- 2. frozen layers stay frozen through a file ---------------------------------------


def _fine_tuning_model():
    """Listing 5.22's shape: a nested base with only its last conv block trainable, under a new head."""
    base = models.Sequential(
        [
            layers.Conv2D(4, (3, 3), activation="relu", padding="same", input_shape=(8, 8, 3), name="block1_conv1"),
            layers.MaxPooling2D((2, 2), name="block1_pool"),
            layers.Conv2D(4, (3, 3), activation="relu", padding="same", name="block5_conv1"),
            layers.Conv2D(4, (3, 3), activation="relu", padding="same", name="block5_conv2"),
        ],
        name="conv_base",
    )
    unfreeze_from(base, "block5_conv1")
    model = models.Sequential([base, layers.Flatten(), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.RMSprop(learning_rate=1e-5), loss="binary_crossentropy", metrics=["acc"])
    return model


def _flags(model):
    flags = {}
    for layer in model.layers:
        flags[layer.name] = layer.trainable
        for inner in getattr(layer, "layers", []):
            flags[f"{layer.name}/{inner.name}"] = inner.trainable
    return flags


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("frozen_base", [False, True], ids=["fine-tuning-5.22", "frozen-base-5.20"])
def test_load_model_keeps_every_layers_trainable_flag(tmp_path, frozen_base, suffix):
    model = _fine_tuning_model()
    if frozen_base:
        model.layers[0].trainable = False
    before = (_flags(model), [w.name for w in model.weights if w.trainable], model.get_weights())
    model.save(tmp_path / f"model{suffix}")
    loaded = models.load_model(tmp_path / f"model{suffix}")
    after = (_flags(loaded), [w.name for w in loaded.weights if w.trainable], loaded.get_weights())
    assert after[:2] == before[:2]
    for array, loaded_array in zip(before[2], after[2], strict=True):  # a nested model's frozen weights are written last
        np.testing.assert_array_equal(array, loaded_array)


# --- 3. names that a file can hold ----------------------------------------------------


def test_duplicate_and_slashed_layer_names_are_refused_when_made_or_added():
    with pytest.raises(ValueError, match=r"a layer name must be a non-empty string without '/', got 'conv/1'"):
        layers.Conv2D(2, 3, name="conv/1")
    model = models.Sequential([layers.Dense(2, input_shape=(3,), name="head")])
    with pytest.raises(ValueError, match=r"'head' is already the name of a layer in this model"):
        model.add(layers.Dense(2, name="head"))
    assert len(model.layers) == 1
    inputs = fastconv.Input(shape=(3,))
    hidden = layers.Dense(2, name="twin")(inputs)
    with pytest.raises(ValueError, match=r"'twin' is already the name"):
        fastconv.Model(inputs, layers.Dense(2, name="twin")(hidden))


def test_a_layer_renamed_after_adding_is_refused_before_the_file_is_touched(tmp_path):
    model = small_model()
    path = tmp_path / "model.h5"
    model.save(path)
    before = path.read_bytes()
    model.layers[2].name = model.layers[0].name
    with pytest.raises(ValueError, match=r"cannot save model .*all layers must have unique names"):
        model.save(path)
    assert path.read_bytes() == before


# --- 4. the optimizer's state, in Keras' layout -------------------------------------------


def test_optimizer_state_is_saved_in_keras_layout_and_restored(tmp_path):
    x, y = data()
    model = small_model()
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "model.h5"
    model.save(path)
    with h5py.File(path, "r") as file:  # Keras 3's order: iteration, learning rate, then each weight's momentum and velocity
        names = [n.decode() for n in file["optimizer_weights"].attrs["weight_names"]]
        assert names[:2] == ["adam/iteration", "adam/learning_rate"] and int(file["optimizer_weights/adam/iteration"][()]) == 4
        assert names[2:5] == ["adam/conv2d_kernel_momentum", "adam/conv2d_kernel_velocity", "adam/conv2d_bias_momentum"]
    loaded = models.load_model(path)
    assert loaded.optimizer.iterations == 4
    trainable = [w for w in model.weights if w.trainable]
    saved, restored = model.optimizer.get_state(trainable), loaded.optimizer.get_state([w for w in loaded.weights if w.trainable])
    for kind, kind_restored in zip(saved[1], restored[1], strict=True):
        for weight, slot, slot_restored in zip(trainable, kind, kind_restored, strict=True):
            np.testing.assert_array_equal(slot, slot_restored, err_msg=weight.name)
    model.save(tmp_path / "no_optimizer.h5", include_optimizer=False)
    with h5py.File(tmp_path / "no_optimizer.h5", "r") as file:
        assert "optimizer_weights" not in file
    assert models.load_model(tmp_path / "no_optimizer.h5").optimizer.iterations == 0


# --- 5. loading is all or nothing ---------------------------------------------------------


def test_load_weights_by_order_changes_nothing_when_a_later_layer_does_not_fit(tmp_path):
    source = models.Sequential([layers.Conv2D(3, (3, 3), input_shape=(6, 6, 2)), layers.Flatten(), layers.Dense(5)])
    source.save_weights(tmp_path / "w.h5")
    target = models.Sequential([layers.Conv2D(3, (3, 3), input_shape=(6, 6, 2)), layers.Flatten(), layers.Dense(4)])
    before = target.get_weights()
    with pytest.raises(ValueError, match=r"layer 'dense_1' has weights of shapes \[\(48, 4\), \(4,\)\].*nothing was loaded"):
        target.load_weights(tmp_path / "w.h5")
    for kept, now in zip(before, target.get_weights()):
        np.testing.assert_array_equal(kept, now)  # the first conv layer, which did fit, was not loaded either
    with pytest.raises(ValueError, match="model 'sequential_1' has 4 weights, got 3 arrays"):
        target.set_weights(before[:3])
    with pytest.raises(ValueError, match=r"cannot assign an array of shape \(3,\)"):
        target.set_weights([before[0], before[1], before[2], np.zeros(3, np.float32)])
    for kept, now in zip(before, target.get_weights()):
        np.testing.assert_array_equal(kept, now)


# --- the Keras API: round trips of fastconv's own files --------------------


def test_save_and_load_model_round_trip_is_bit_exact(tmp_path):
    model = small_classifier()
    x, y = tiny_data()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "model.h5"
    model.save(path)
    loaded = models.load_model(path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))
    assert summary_text(model) == summary_text(loaded)
    assert loaded.loss.name == "categorical_crossentropy" and loaded.metric_names == ["accuracy"]
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)  # compiled and trainable again


def test_functional_model_round_trip(tmp_path):
    model = functional_8_1()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    path = tmp_path / "functional.h5"
    model.save(path)
    loaded = models.load_model(path)
    assert total_params(loaded) == 104_202
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_weights_files_in_keras_layout(tmp_path):
    import h5py

    model = small_classifier()
    path = tmp_path / "weights.h5"
    model.save_weights(path)
    with h5py.File(path, "r") as file:
        assert [n.decode() for n in file.attrs["layer_names"]][:2] == ["conv2d", "max_pooling2d"]
        assert [n.decode() for n in file["conv2d"].attrs["weight_names"]] == ["conv2d/kernel:0", "conv2d/bias:0"]
        assert file["conv2d/conv2d/kernel:0"].shape == (3, 3, 2, 3)
    fastconv.clear_session()
    other = small_classifier()
    other.load_weights(path)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    # by name: a model that shares only some layer names takes those, leaves the rest
    fastconv.clear_session()
    partial = models.Sequential([layers.Conv2D(3, (3, 3), padding="same", input_shape=(6, 6, 2)), layers.Flatten(), layers.Dense(2, name="head")])
    head_before = partial.get_layer("head").get_weights()[0].copy()
    partial.load_weights(path, by_name=True)
    np.testing.assert_array_equal(partial.layers[0].get_weights()[0], model.layers[0].get_weights()[0])
    np.testing.assert_array_equal(partial.get_layer("head").get_weights()[0], head_before)
    with pytest.raises(ValueError, match="holds weights for 4 layers"):
        partial.load_weights(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.load_weights(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 weights file"):
        model.load_weights(tmp_path / "junk.h5")


def test_global_pooling_in_a_trained_and_reloaded_model(tmp_path):
    set_random_seed(1)
    model = models.Sequential([
        layers.Conv2D(8, 3, activation="relu", input_shape=(12, 12, 3)),
        layers.GlobalAveragePooling2D(),
        layers.Dense(2, activation="softmax"),
    ])  # fmt: skip
    assert model.output_shape == (None, 2) and model.count_params() == 3 * 3 * 3 * 8 + 8 + 8 * 2 + 2
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
    x = np.random.default_rng(0).standard_normal((16, 12, 12, 3)).astype(np.float32)
    y = to_categorical(np.arange(16) % 2, 2)
    first = model.train_on_batch(x, y)[0]
    for _ in range(5):
        last = model.train_on_batch(x, y)[0]
    assert last < first
    model.save(tmp_path / "gap.h5")
    reloaded = models.load_model(tmp_path / "gap.h5")
    assert type(reloaded.layers[1]).__name__ == "GlobalAveragePooling2D"
    np.testing.assert_allclose(reloaded.predict(x), model.predict(x), rtol=1e-6)


@pytest.mark.parametrize("character", ["a", "é"], ids=["ascii", "two-byte"])
def test_a_file_name_of_250_bytes_can_be_saved(tmp_path, character):
    """A name of 250 bytes is legal (255 on most file systems); its temporary must be too."""
    model = small_model()
    for suffix, save in ((".keras", model.save), (".h5", model.save), (".weights.h5", model.save_weights)):
        room = 250 - len(suffix)
        stem = character * (room // len(character.encode())) + "a" * (room % len(character.encode()))
        path = tmp_path / f"{stem}{suffix}"
        assert len(os.fsencode(path.name)) == 250
        save(path)
        save(path)  # over the existing file too
        if suffix != ".weights.h5":
            np.testing.assert_array_equal(models.load_model(path).get_weights()[0], model.get_weights()[0])
    assert len(list(tmp_path.iterdir())) == 3, "a temporary file was left behind"
