"""How the tag stage cuts a batch into the decoding threads' tasks (tasks/tag/stages.py chunked)."""

from __future__ import annotations

import pytest

from tasks.tag.stages import PREPARE_CHUNK, chunked


@pytest.mark.parametrize("images", [0, 1, 3, 7, 8, 9, 20, 33, 256, 1000])
@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_a_batch_is_cut_in_order_into_even_tasks_that_keep_every_thread_busy(images, workers):
    refs = [f"img{index:04d}.jpg" for index in range(images)]
    tasks = chunked(refs, workers)
    assert [ref for task in tasks for ref in task] == refs  # each image once, in listing order
    sizes = [len(task) for task in tasks]
    assert all(1 <= size <= PREPARE_CHUNK for size in sizes)
    assert max(sizes, default=0) - min(sizes, default=0) <= 1  # no thread left with a longer last task
    if images >= workers:
        assert len(tasks) % workers == 0  # as many tasks for each thread
    else:
        assert len(tasks) == images


def test_a_small_nights_batch_of_photos_is_shared_evenly_by_two_threads():
    """20 photos on 2 threads: 4 tasks of 5, not 8, 8 and 4 (12 photos on one thread, 8 on the other)."""
    assert [len(task) for task in chunked(list(range(20)), 2)] == [5, 5, 5, 5]
