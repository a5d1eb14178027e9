import { describe, expect, test } from "bun:test";
import { batchAt, planBatches, totalBatches } from "../../src/plan/batches.ts";

describe("item ranges", () => {
  test("even split", () => {
    expect(planBatches({ size: 10, total_items: 100, start_item: 1 })).toHaveLength(10);
    expect(batchAt({ size: 10, total_items: 100, start_item: 1 }, 10)).toEqual({ batch_num: 10, start_item: 91, end_item: 100 });
  });
  test("the last batch is partial", () => {
    expect(planBatches({ size: 3, total_items: 10, start_item: 1 }).map((b) => [b.start_item, b.end_item])).toEqual([
      [1, 3],
      [4, 6],
      [7, 9],
      [10, 10],
    ]);
  });
  test("start_item > 1 shifts every batch", () => {
    expect(planBatches({ size: 10, total_items: 25, start_item: 5 }).map((b) => [b.start_item, b.end_item])).toEqual([
      [5, 14],
      [15, 24],
      [25, 25],
    ]);
  });
  test("one item, one batch", () => {
    expect(totalBatches({ size: 50, total_items: 1, start_item: 1 })).toBe(1);
  });
  test("start after the end gives no batches (never negative)", () => {
    expect(totalBatches({ size: 1, total_items: 5, start_item: 10 })).toBe(0);
  });
  test("batch numbers outside the plan are rejected (no phantom batch 0)", () => {
    expect(() => batchAt({ size: 2, total_items: 4, start_item: 1 }, 0)).toThrow("batch 0 does not exist");
    expect(() => batchAt({ size: 2, total_items: 4, start_item: 1 }, 3)).toThrow("the job has 2 batches");
  });
});
