#pragma once
// The zygote: a small process forked from main right after config and task-library loading,
// before any connection, queue or backlog exists. Workers are forked from it, so a worker
// never inherits main's heap and a fork never stalls main's loop.
//
// Supervision: the zygote is the workers' parent. It reaps them and reports each exit to main
// over its control socket; with each new worker it passes main the worker's two pipe ends and
// a pidfd (SCM_RIGHTS), so main signals the right process even after a pid is reused. If main
// dies, the zygote gets SIGKILL (PR_SET_PDEATHSIG) and so do the workers, in a chain.

#include <sys/types.h>

#include <functional>
#include <unordered_map>

#include "dispatcherd/fd.h"
#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/pool/launcher.h"

namespace dispatcherd {

/// What a worker process runs; called in the child with its two pipe ends and its id,
/// returns the exit code. The zygote's caller supplies it (the service passes the worker loop).
using WorkerEntry = std::function<int(int in_fd, int out_fd, int worker_id)>;

/// Fault injection for tests: make every Nth spawn fail (0 = never); read from the
/// DISPATCHERD_FAULT_SPAWN_FAIL_EVERY environment variable at zygote start.
struct ZygoteFaults {
  int fail_every = 0;
};

/// The real launcher. Create it early (it forks); then attach() it to the loop.
class Zygote : public WorkerLauncher {
 public:
  /// Forks the zygote process now. `entry` runs in each worker.
  explicit Zygote(WorkerEntry entry);
  ~Zygote() override;
  Zygote(const Zygote&) = delete;
  Zygote& operator=(const Zygote&) = delete;

  /// Registers the control socket on `loop`; call once the loop exists.
  void attach(EventLoop& loop);
  /// The zygote's pid (for the SIGCHLD path in main: it is main's only direct child).
  pid_t pid() const { return pid_; }
  /// Called by main's SIGCHLD path when the zygote itself died: forks a new one.
  void zygote_died(int wait_status);

  void set_events(Events events) override { events_ = std::move(events); }
  void launch(int worker_id) override;
  bool signal(pid_t pid, int signo, int value) override;
  std::size_t live_processes() const override { return pidfds_.size(); }

 private:
  void spawn_zygote();
  void on_readable();

  WorkerEntry entry_;
  pid_t pid_ = -1;
  Fd sock_;
  EventLoop* loop_ = nullptr;
  Events events_;
  std::unordered_map<pid_t, Fd> pidfds_;  // live workers
};

}  // namespace dispatcherd
