/**
 * Jobs in lanes (restore's data phase): jobs 0 … n−1, in the order of the data they read, are
 * cut into one contiguous lane per worker, and each worker takes the jobs of its own lane from
 * the front. A worker whose lane is done takes the last job of the lane with the most left
 * (from the back, so the owner's next jobs stay next to what it has just read). Each worker's
 * frame cache then serves one stretch of the data: a frame that files of many jobs need (the
 * blocks an incremental or a merge added, read by files all over a generation) is
 * decompressed once per lane instead of by every worker in turn.
 */
export class Lanes {
  private readonly front: number[] = []
  private readonly back: number[] = []

  constructor(n: number, lanes: number) {
    const k = Math.max(1, Math.min(lanes, n || 1))
    for (let i = 0; i < k; i++) {
      this.front.push(Math.floor((i * n) / k))
      this.back.push(Math.floor(((i + 1) * n) / k))
    }
  }

  /** The next job for the worker of lane `w` (modulo the lanes), or -1 when every lane is done. */
  take(w: number): number {
    const own = w % this.front.length
    if (this.front[own]! < this.back[own]!) return this.front[own]!++
    let victim = -1
    let most = 0
    for (let i = 0; i < this.front.length; i++) {
      const left = this.back[i]! - this.front[i]!
      if (left > most) {
        most = left
        victim = i
      }
    }
    return victim < 0 ? -1 : --this.back[victim]!
  }
}
