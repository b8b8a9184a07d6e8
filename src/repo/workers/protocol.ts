/**
 * The messages between the main thread and its worker threads, generic: a job names its
 * handler (`op`) and carries that handler's payload; the job modules own the payload types
 * (compress: CompressRequest, restore: RestoreFilesRequest, verify: ReadFramesRequest).
 * Only the thread entry imports the job modules, so none of them imports another.
 */
export interface WorkerRequest {
  id: number
  /** The handler's name in the thread entry's dispatch table. */
  op: string
  [field: string]: unknown
}

export interface WorkerReply {
  id: number
  error?: string
  errorCode?: string
  /** The failed system call, when the error is an fs error. */
  errorSyscall?: string
  [field: string]: unknown
}

/** What a handler gets: its own request type, sent by the pool. */
export type Handler = (req: WorkerRequest) => WorkerReply | Promise<WorkerReply>
