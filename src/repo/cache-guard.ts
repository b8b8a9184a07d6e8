/**
 * A volume backup of an image file leaves the page cache as it found it (issue 14).
 *
 * Reading a file through the page cache leaves its pages there, and on Linux ≥ 6.16 a
 * sequential read leaves them in large folios (up to 2 MiB on ext4). A 4 KiB write into such
 * a clean folio costs the writer ~35–40 µs instead of ~6 µs (measured on a 1 GiB image on
 * ext4: native-notes/volumes.md, "The page cache a volume backup leaves"), until the pages
 * are evicted: a backup of a VM's image that the VM did not have cached slowed every later
 * write of the VM to it. So the parts of the file that were not cached when the backup began
 * are dropped again once read (POSIX_FADV_DONTNEED: clean pages go, dirty ones are only
 * written back); the parts that were cached (a writer's working set) are left alone.
 *
 * "Not cached" is decided per region of REGION_BYTES before the first read, from
 * cachestat(2): a region with less than half of its pages cached is the backup's to drop.
 * Decided up front because the backup's own read-ahead caches the next region before it is
 * reached. Without cachestat (Linux < 6.5) nothing is dropped.
 */
import * as native from '../native/index.js'

/** The granularity of the decision: a multiple of every read chunk (4 MiB). */
export const REGION_BYTES = 64 << 20
/** The largest page-cache folio of a file here (PMD size on x86-64): a divisor of REGION_BYTES. */
const FOLIO_BYTES = 2 << 20

export class PageCacheGuard {
  /** cold[i]: region i was less than half cached when the backup began. */
  private readonly cold: Uint8Array
  /** Regions counted cold, and bytes dropped (for tests and --json). */
  readonly stats = { regions: 0, coldRegions: 0, droppedBytes: 0 }

  private constructor(private readonly fd: number, regions: number) {
    this.cold = new Uint8Array(regions)
    this.stats.regions = regions
  }

  /** The guard of an image file `fd` of `sizeBytes`, or null when the kernel cannot say what is cached. */
  static open(fd: number, sizeBytes: number): PageCacheGuard | null {
    const regions = Math.ceil(sizeBytes / REGION_BYTES)
    if (regions === 0) return null
    const g = new PageCacheGuard(fd, regions)
    for (let i = 0; i < regions; i++) {
      const off = i * REGION_BYTES
      const len = Math.min(REGION_BYTES, sizeBytes - off)
      const cs = native.cachestat(fd, off, len)
      if (!cs) return null
      const pages = Math.ceil(len / 4096)
      if (cs[0] * 2 < pages) {
        g.cold[i] = 1
        g.stats.coldRegions++
      }
    }
    return g
  }

  /** The bytes [pos, pos + len) were read into a private buffer: drop those the backup brought in. */
  release(pos: number, len: number): void {
    if (len <= 0) return
    const first = Math.floor(pos / REGION_BYTES)
    const last = Math.floor((pos + len - 1) / REGION_BYTES)
    for (let i = first; i <= last && i < this.cold.length; i++) {
      if (!this.cold[i]) continue
      // from the 2 MiB boundary below: a large folio that straddles the start of this read
      // (a read starting at a SEEK_DATA offset, or sized by the stream's reserve) was only
      // partly inside the last drop, and DONTNEED keeps folios it does not cover whole
      const from = Math.max(Math.floor(pos / FOLIO_BYTES) * FOLIO_BYTES, i * REGION_BYTES)
      const to = Math.min(pos + len, (i + 1) * REGION_BYTES)
      if (native.fadvise(this.fd, from, to - from, 'dontneed')) this.stats.droppedBytes += to - Math.max(pos, from)
    }
  }
}
