"""Block-local epoch order and blocks on disk: a streamed student must train as the in-memory one."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distillguard.data.preprocessing import Standardizer
from distillguard.models.classifiers import architecture, build_model
from distillguard.train.loop import Recipe, batch_order, fit
from distillguard.train.rows import BlockRows, TensorRows, array_loader, iter_batches, npy_loader, write_npy_block


def test_one_block_is_the_plain_permutation():
    ours = list(iter_batches([130], batch_size=64, generator=torch.Generator().manual_seed(3)))
    plain = list(torch.randperm(130, generator=torch.Generator().manual_seed(3)).split(64))
    assert [len(b) for b in ours] == [64, 64, 2]
    assert all(torch.equal(a, b) for a, b in zip(ours, plain))


def test_blocks_are_visited_whole_and_batches_straddle_at_most_one_boundary():
    sizes = [50, 40, 70, 35]  # every block at least a minibatch
    batches = list(iter_batches(sizes, batch_size=32, generator=torch.Generator().manual_seed(0)))
    order = torch.cat(batches)
    assert torch.equal(order.sort().values, torch.arange(195))
    offsets = np.cumsum([0] + sizes)
    block = np.searchsorted(offsets, order.numpy(), side="right") - 1
    runs = block[np.r_[True, np.diff(block) != 0]]
    assert sorted(runs.tolist()) == [0, 1, 2, 3]  # each block's rows are contiguous in the order
    for b in batches:
        assert len(np.unique(np.searchsorted(offsets, b.numpy(), side="right"))) <= 2
    assert [len(b) for b in batches] == [32] * 6 + [3]  # cut across blocks, not at every block's end


def test_block_order_is_seeded_and_varies_by_epoch():
    g = torch.Generator().manual_seed(1)
    first = torch.cat(batch_order(90, recipe=Recipe(1, 16, 1e-3, 0.0), generator=g, blocks=[30, 30, 30]))
    second = torch.cat(batch_order(90, recipe=Recipe(1, 16, 1e-3, 0.0), generator=g, blocks=[30, 30, 30]))
    again = torch.cat(batch_order(90, recipe=Recipe(1, 16, 1e-3, 0.0), generator=torch.Generator().manual_seed(1),
                                  blocks=[30, 30, 30]))
    assert torch.equal(first, again) and not torch.equal(first, second)


def test_standardizer_fit_blocks_matches_fit():
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(1000, 5)) * [1, 10, 100, 1e-3, 0] + [0, 5, -3, 1e4, 7]).astype(np.float32)
    whole = Standardizer.fit(X)
    merged = Standardizer.fit_blocks([X[:100], X[100:700], X[700:]])
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-6)
    np.testing.assert_allclose(merged.scale, whole.scale, rtol=1e-5)
    one = Standardizer.fit_blocks([X])
    assert np.array_equal(one.mean, whole.mean) and np.array_equal(one.scale, whole.scale)
    with pytest.raises(ValueError, match="no rows"):
        Standardizer.fit_blocks([X[:0]])


def _train(rows, validation):
    model = build_model(architecture(kind="mlp", input_shape=[6], n_classes=3, hidden=[16], channels=[]), seed=5)
    fit(model, rows, loss_fn=F.cross_entropy, recipe=Recipe(4, 32, 1e-2, 0.0), seed=9, validation=validation,
        metric=lambda z, y: float((z.argmax(-1) == y).float().mean()))
    return model.state_dict()


def test_blocks_on_disk_train_bit_for_bit_like_blocks_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [70, 50, 80]
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = rng.integers(0, 3, 200).astype(np.int64)
    offsets = np.cumsum([0] + sizes)
    for k in range(3):
        write_npy_block(tmp_path, k, X[offsets[k]:offsets[k + 1]], y[offsets[k]:offsets[k + 1]])
    train = [np.arange(n - 10) for n in sizes]
    val = [np.arange(n - 10, n) for n in sizes]
    on_disk = BlockRows(npy_loader(tmp_path), [np.arange(n) for n in sizes])
    streamed = _train(on_disk.subset(train), on_disk.subset(val))
    in_memory = BlockRows(array_loader(X, y, sizes), [np.arange(n) for n in sizes])
    assert all(torch.equal(a, b) for a, b in zip(streamed.values(), _train(in_memory.subset(train),
                                                                          in_memory.subset(val)).values()))
    # The same rows as tensors with the same block sizes: the same model again.
    train_rows = np.concatenate([offsets[k] + t for k, t in enumerate(train)])
    tensors = TensorRows(torch.from_numpy(X[train_rows]), torch.from_numpy(y[train_rows]), [len(t) for t in train])
    val_rows = np.concatenate([offsets[k] + v for k, v in enumerate(val)])
    val_tensors = TensorRows(torch.from_numpy(X[val_rows]), torch.from_numpy(y[val_rows]), [10, 10, 10])
    assert all(torch.equal(a, b) for a, b in zip(streamed.values(), _train(tensors, val_tensors).values()))
    # One block instead of three is a different (full) shuffle: a different model.
    one = TensorRows(torch.from_numpy(X[train_rows]), torch.from_numpy(y[train_rows]))
    assert not all(torch.equal(a, b) for a, b in zip(streamed.values(), _train(one, val_tensors).values()))


def test_block_rows_hold_at_most_two_blocks(tmp_path):
    loads = []
    X, y = np.zeros((40, 2), np.float32), np.zeros(40, np.int64)

    def loader(k):
        loads.append(k)
        return array_loader(X, y, [10] * 4)(k)

    rows = BlockRows(loader, [np.arange(10)] * 4)
    for index in iter_batches(rows.sizes, batch_size=8, generator=torch.Generator().manual_seed(0)):
        rows.take(index)
        assert len(rows._held) <= 2
    assert sorted(loads) == [0, 1, 2, 3]  # each block read once per epoch
