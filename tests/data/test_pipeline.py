import keras
import numpy as np
import pytest

from layerkit.data.pipeline import Pipeline
from layerkit.data.sources import ArraySource, open_dataset


def _numbered(n=50, size=4):
    """Image k is filled with k: the batch contents say which examples came."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None],
                             (n, size, size, 3)).copy()
    return ArraySource(images, np.arange(n) % 5)


def _ids(batches):
    return [int(v) for x, _ in batches for v in x[:, 0, 0, 0]]


def _epoch(pipeline):
    return list(iter(pipeline))


def test_batches_are_uint8_nhwc_and_int32():
    p = Pipeline(open_dataset("sample", "test"), 16, prefetch=0)
    x, y = p[0]
    assert x.shape == (16, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (16,) and y.dtype == np.int32
    assert len(p) == 1000 // 16 and p.image_shape == (32, 32, 3)


def test_same_seed_same_batches_other_seed_other_order():
    a, b, c = (_ids(_epoch(Pipeline(_numbered(), 8, seed=s))) for s in (3, 3, 4))
    assert a == b and a != c


def test_every_example_once_per_epoch_and_reshuffled():
    p = Pipeline(_numbered(), 10, seed=1)
    first, second = _ids(_epoch(p)), _ids(_epoch(p))
    assert sorted(first) == sorted(second) == list(range(50))
    assert first != second
    assert p.state()["epoch"] == 2


def test_drop_remainder_and_last_partial_batch():
    assert len(Pipeline(_numbered(), 8)) == 6  # shuffle: drops the 2 left over
    p = Pipeline(_numbered(), 8, shuffle=False)
    batches = _epoch(p)
    assert len(batches) == 7 and len(batches[-1][1]) == 2
    assert _ids(batches) == list(range(50))


def test_labels_follow_their_images():
    p = Pipeline(_numbered(), 7, seed=2)
    for x, y in _epoch(p):
        np.testing.assert_array_equal(y, x[:, 0, 0, 0] % 5)


@pytest.mark.parametrize("drop", [False, True])
def test_processes_get_disjoint_slices(drop):
    seen = []
    for index in range(3):
        p = Pipeline(_numbered(), 4, seed=5, process_index=index, process_count=3,
                     drop_remainder=drop)
        seen.append(_ids(_epoch(p)))
    for i in range(3):
        for j in range(i):
            assert not set(seen[i]) & set(seen[j])
    everything = sorted(sum(seen, []))
    if drop:
        assert len({len(s) for s in seen}) == 1 and len(everything) == 3 * 16
    else:
        assert everything == list(range(50))


def test_processes_together_serve_the_global_batches_of_one_process():
    one = Pipeline(_numbered(), 12, seed=5)
    parts = [Pipeline(_numbered(), 4, seed=5, process_index=i, process_count=3) for i in range(3)]
    assert len(one) == len(parts[0]) == 4
    for epoch in range(2):
        for step in range(epoch * 4, epoch * 4 + 4):
            joined = np.concatenate([p.batch_indices(step) for p in parts])
            np.testing.assert_array_equal(joined, one.batch_indices(step))


def test_restore_gives_the_same_following_batches():
    p = Pipeline(_numbered(), 8, seed=9)
    _epoch(p)
    p.begin_training()  # as model.fit with epoch_callback() does
    p.begin_epoch(0)
    p[0], p[1]  # hand out two batches of epoch 1
    state = p.state()
    assert state["epoch"] == 1 and state["batch"] == 2
    rest = _ids(list(iter(p))) + _ids(_epoch(p))
    q = Pipeline(_numbered(), 8, seed=9)
    q.restore(state)
    resumed = _ids(_epoch(q))  # iteration: the rest of data epoch 1
    assert resumed == rest[: len(resumed)]
    assert len(resumed) == 32 and q.state() == {**state, "epoch": 2, "batch": 0}
    assert _ids(_epoch(q)) == rest[32:]


def test_set_epoch_matches_iterating():
    p = Pipeline(_numbered(), 8, seed=9)
    _epoch(p), _epoch(p)
    third = _ids(_epoch(p))
    q = Pipeline(_numbered(), 8, seed=9)
    q.set_epoch(2)
    assert _ids(_epoch(q)) == third


def test_cache_gives_the_same_batches_as_decoding():
    source = open_dataset("sample", "test")
    cached = Pipeline(source, 32, seed=1, cache_decoded=True)
    fresh = Pipeline(source, 32, seed=1, cache_decoded=False, prefetch=0)
    for i in (0, 5):
        np.testing.assert_array_equal(cached[i][0], fresh[i][0])


def test_image_size_resizes():
    p = Pipeline(open_dataset("sample", "test"), 4, image_size=(20, 24), cache_decoded=False)
    assert p[0][0].shape == (4, 20, 24, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be a positive integer. Received: batch_size=0"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(batch_size=4, process_index=3, process_count=3), r"process_index must be in \[0, 3\)"),
    (dict(batch_size=4, cache_decoded="yes"), "cache_decoded"),
    (dict(batch_size=4, image_size=(32,)), "image_size"),
    (dict(batch_size=4, seed=-1), "seed"),
    (dict(batch_size=64), "make no full batch of 64"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Pipeline(_numbered(), **kwargs)


def test_bad_state_and_source():
    p = Pipeline(_numbered(), 8)
    with pytest.raises(ValueError, match="seed=0, this pipeline has seed=1"):
        Pipeline(_numbered(), 8, seed=1).restore(p.state())
    with pytest.raises(ValueError, match="batch in"):
        p.restore({"epoch": 0, "batch": 99})
    with pytest.raises(ValueError, match="encoded_many"):
        Pipeline(object(), 8)


def test_fit_evaluate_predict_with_a_pipeline():
    train = Pipeline(open_dataset("sample", "train"), 32, seed=0)
    test = Pipeline(open_dataset("sample", "test"), 100, shuffle=False)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, strides=4),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=True)
    history = model.fit(train, epochs=2, steps_per_epoch=None, shuffle=False, verbose=0,
                        validation_data=test, callbacks=[train.epoch_callback()])
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    # fit peeks at batch 0 before training: still one data epoch per Keras epoch
    assert train.state()["epoch"] == 2 and train.state()["batch"] == 0
    loss, accuracy = model.evaluate(test, verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    assert model.predict(test, verbose=0).shape == (1000, 10)


class _Recording(Pipeline):
    """Records which examples each batch Keras asks for holds."""

    def __getitem__(self, i):
        step = self.step_of(i)
        self.seen.append(tuple(self.batch_indices(step)))
        return super().__getitem__(i)


def _tiny_model():
    model = keras.Sequential([keras.Input((4, 4, 3), dtype="uint8"), keras.layers.Flatten(),
                              keras.layers.Dense(5)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_fit_resumed_mid_epoch_sees_the_same_batches():
    nb = 6  # 50 images // 8
    straight = _Recording(_numbered(), 8, seed=3)
    straight.seen = []
    _tiny_model().fit(straight, epochs=2, shuffle=False, verbose=0, callbacks=[straight.epoch_callback()])
    expected = straight.seen[-2 * nb :]  # data epochs 0 and 1 (fit peeks at batch 0 first)
    assert straight.state()["epoch"] == 2

    resumed = _Recording(_numbered(), 8, seed=3)
    resumed.seen = []
    resumed.restore({"epoch": 0, "batch": 2})
    _tiny_model().fit(resumed, epochs=1, shuffle=False, verbose=0, callbacks=[resumed.epoch_callback()])
    assert resumed.seen[-nb:] == expected[2 : 2 + nb]
    assert resumed.state() == {**straight.state(), "epoch": 1, "batch": 2}


def test_epochs_are_what_the_engine_says_not_how_often_keras_calls_on_epoch_end():
    p = Pipeline(_numbered(), 8, seed=3, prefetch=0)
    for _ in range(5):
        p.on_epoch_end()  # Keras calls it before training, after peeks and evaluations: no effect
    assert p.state()["epoch"] == 0
    p.begin_training()
    p.begin_epoch(7)  # the first epoch of this fit: continues from where the pipeline stands
    assert [p.step_of(i) for i in range(3)] == [0, 1, 2]
    p.begin_epoch(8)
    assert p.step_of(0) == len(p) and p.epoch == 1
    p.set_epoch(4)
    p.begin_training()
    p.begin_epoch(4)
    np.testing.assert_array_equal(p[1][1], p.batch_at(4 * len(p) + 1)[1])


def test_steps_per_epoch_below_a_pass_follow_keras_positions():
    """fit(steps_per_epoch=s) keeps one pass over s-step epochs; the epoch reaching the end of the
    pass stops there (Keras's EpochIterator), and the next pass is the next data epoch."""
    p = Pipeline(_numbered(), 8, seed=3, prefetch=0)  # 6 batches
    p.begin_training()
    starts = []
    for epoch in range(5):
        p.begin_epoch(epoch, steps_per_epoch=4)
        starts.append(p.step_of([0, 4][epoch % 2]))  # the position Keras asks for first
    assert starts == [0, 4, 6, 10, 12]


def test_fit_with_steps_per_epoch_sees_every_batch_once_in_order():
    nb = 6
    p = _Recording(_numbered(), 8, seed=3)
    p.seen = []
    _tiny_model().fit(p, epochs=3, steps_per_epoch=4, shuffle=False, verbose=0, callbacks=[p.epoch_callback(4)])
    steps = [next(s for s in range(3 * nb) if tuple(p.batch_indices(s)) == b) for b in p.seen[1:]]
    assert steps == list(range(len(steps))) and len(steps) >= 10  # 4 + 2 (the pass ends) + 4


def test_fit_without_the_callback_warns_that_an_epoch_repeats():
    p = Pipeline(_numbered(), 8, seed=3, prefetch=0)
    with pytest.warns(UserWarning, match="serves data epoch 0 again"):
        _tiny_model().fit(p, epochs=2, shuffle=False, verbose=0)


def test_device_is_a_constructor_argument():
    p = Pipeline(_numbered(), 8, device=None)
    assert p.device is None
    q = Pipeline(_numbered(), 8, device="auto")  # a CPU here: batches stay on the host
    assert q.device is None and isinstance(q[0][0], np.ndarray)


def test_decoding_processes_give_the_same_batches(tmp_path):
    from layerkit.data.sources import Subset

    source = Subset(open_dataset("sample", "test"), np.arange(200))
    threads = Pipeline(source, 32, seed=5, cache_decoded=False, prefetch=0)
    processes = Pipeline(source, 32, seed=5, cache_decoded=False, processes=2)
    try:
        assert processes.processes == 2 and threads.processes == 0
        for step in (0, 1, 7, 6):  # across an epoch boundary, out of order
            (a, ya), (b, yb) = threads.batch_at(step), processes.batch_at(step)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ya, yb)
        assert _ids([processes[0]]) == _ids([threads[0]])
    finally:
        processes.close()
    assert Pipeline(source, 32, processes=2).processes == 0  # a decoded cache: nothing to decode per epoch


def test_sources_pickle_for_worker_processes(tmp_path):
    import pickle

    from layerkit.data.sources import Subset
    from layerkit.records import write_records

    write_records(open_dataset("sample", "test"), tmp_path / "shards", shards=2)
    for source in (Subset(open_dataset(str(tmp_path / "shards")), np.arange(10, 60)),
                   Subset(open_dataset("sample", "test"), np.arange(5))):
        copy = pickle.loads(pickle.dumps(source))
        assert copy.encoded_many([0, 3]) == source.encoded_many([0, 3]) and copy.describe(1) == source.describe(1)
