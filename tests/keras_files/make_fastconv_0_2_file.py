"""Made once with fastconv 0.2.0 (commit 5993e59), before Keras interop: a file in fastconv's first format.

    git worktree add /tmp/fastconv-0.2 5993e59 && cd /tmp/fastconv-0.2 && pip install -e . && \
        python /path/to/tests/keras_files/make_fastconv_0_2_file.py /path/to/tests/keras_files

The model nests a partially frozen base (the fine-tuning case, whose weight order the first format wrote
differently from Keras) and trained two Adam steps, so the file holds optimizer state in the old layout
(``Adam/iter:0``, every ``m``, then every ``v``). ``fastconv_0_2.npz`` holds inputs, outputs, and the
state, to check that today's fastconv reads it as fastconv 0.2 did.
"""

import sys
from pathlib import Path

import numpy as np

import fastconv
from fastconv import layers, models, optimizers

folder = Path(sys.argv[1])
fastconv.utils.set_random_seed(7)
inputs = fastconv.Input(shape=(8, 8, 2))
x = layers.Conv2D(3, (3, 3), activation="relu", padding="same", name="base_conv1")(inputs)
x = layers.Conv2D(4, (3, 3), activation="relu", name="base_conv2")(x)
base = models.Model(inputs, layers.MaxPooling2D((2, 2), name="base_pool")(x), name="base")
model = models.Sequential([base, layers.Flatten(), layers.Dense(5, activation="relu"), layers.Dense(3, activation="softmax")], name="tuned")
base.trainable = True
base.get_layer("base_conv1").trainable = False
model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="categorical_crossentropy", metrics=["acc"])
rng = np.random.default_rng(7)
x_batch = rng.uniform(0, 1, (6, 8, 8, 2)).astype(np.float32)
y_batch = fastconv.utils.to_categorical(np.arange(6) % 3, 3)
model.fit(x_batch, y_batch, batch_size=3, epochs=1, verbose=0, shuffle=False)
model.save(folder / "fastconv_0_2.h5")
state = model.optimizer.get_state([w for w in model.weights if w.trainable])
np.savez(
    folder / "fastconv_0_2.npz", x=x_batch, y=y_batch, predict=model.predict(x_batch),
    **{f"state/{name}": value for name, value in state},
)
print(fastconv.__version__, [name for name, _ in state][:4])
