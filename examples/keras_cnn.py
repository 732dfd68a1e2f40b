"""The guide's Keras CNN, verbatim: zero2one trains it (model.arch: keras:examples/keras_cnn.py:build)
with its own data, augmentation, schedules, checkpoints, tracking and serving."""

from keras import layers, models


def build():
    model = models.Sequential([
        layers.Conv2D(32, (3, 3), activation='relu', input_shape=(32, 32, 3)),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(10, activation='softmax')
    ])
    return model
