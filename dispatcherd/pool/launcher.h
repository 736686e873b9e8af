#pragma once
// The WorkerLauncher interface: how the pool gets worker processes. The real one is the
// Zygote (zygote.h); tests/support has a fake that hands out pipes without forking, so the
// pool is unit-tested with the test playing the worker's side of the protocol.

#include <sys/types.h>

#include <functional>
#include <string>

#include "dispatcherd/fd.h"

namespace dispatcherd {

/// Creates worker processes asynchronously and reports their start and exit.
class WorkerLauncher {
 public:
  /// What the launcher reports back. All calls happen on the event loop.
  struct Events {
    /// Worker `worker_id` runs as `pid`; main writes frames to `to_worker` and reads frames
    /// from `from_worker` (both non-blocking, close-on-exec).
    std::function<void(int worker_id, pid_t pid, Fd to_worker, Fd from_worker)> started;
    /// The process for `worker_id` could not be created.
    std::function<void(int worker_id, const std::string& error)> start_failed;
    /// Process `pid` ended with `wait_status` (as from waitpid) and has been reaped.
    std::function<void(pid_t pid, int wait_status)> exited;
  };

  virtual ~WorkerLauncher() = default;
  /// Sets where results go; call once before launch().
  virtual void set_events(Events events) = 0;
  /// Requests a new worker process with id `worker_id`; the answer comes through Events.
  virtual void launch(int worker_id) = 0;
  /// Sends `signo` to worker `pid`, with `value` as the sigqueue payload. False when the
  /// process is already gone.
  virtual bool signal(pid_t pid, int signo, int value) = 0;
  /// Number of processes started and not yet reported as exited.
  virtual std::size_t live_processes() const = 0;
};

}  // namespace dispatcherd
