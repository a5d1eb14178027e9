/** Pure item-range maths: which items each batch covers. `total_items` is the last item number. */

export interface BatchRange {
  size: number;
  total_items: number;
  start_item: number;
}

export interface PlannedBatch {
  batch_num: number;
  start_item: number;
  end_item: number;
}

export function totalBatches(range: BatchRange): number {
  const items = range.total_items - range.start_item + 1;
  return items <= 0 ? 0 : Math.ceil(items / range.size);
}

/** The 1-based batch `n`; the last batch is partial when the items do not divide evenly. */
export function batchAt(range: BatchRange, n: number): PlannedBatch {
  const total = totalBatches(range);
  if (!Number.isInteger(n) || n < 1 || n > total) {
    throw new RangeError(`batch ${n} does not exist: the job has ${total} batch${total === 1 ? "" : "es"}`);
  }
  const start = (n - 1) * range.size + range.start_item;
  return { batch_num: n, start_item: start, end_item: Math.min(start + range.size - 1, range.total_items) };
}

export function planBatches(range: BatchRange): PlannedBatch[] {
  const total = totalBatches(range);
  const out: PlannedBatch[] = new Array(total);
  for (let n = 1; n <= total; n++) out[n - 1] = batchAt(range, n);
  return out;
}
