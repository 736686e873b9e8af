#pragma once
// Everything a worker process does after it was forked: the worker side of the main ⇄ worker
// protocol (dispatcherd/pool/ipc.h, upstream-spec §7.5-§7.10).
//
//   worker → main: kReady, then per task kDone (and kControl for bind calls), kShutdown last
//   main → worker: kTask, kControlReply (answer to kControl, same seq), kStop
//
// Cancel: main sends sigqueue(pid, SIGUSR1, {.sival_int = (int)(seq & 0x7fffffff)}). The
// handler sets the running task's cancel flag only when the value matches that task, so a
// late cancel for an earlier task is ignored; a plain `kill -USR1` cancels the current task.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "dispatcherd/config.h"

namespace dispatcherd {

/// What the spawner tells a worker about itself.
struct WorkerSettings {
  int worker_id = 0;
  double idle_timeout = 0;  ///< seconds; > 0 → WorkerHooks::on_idle after each idle period
  pid_t main_pid = 0;       ///< expected getppid(); a change means orphaned (0 = no check)
  /// Command tasks by task name (extensions.tasks); not owned, must outlive the loop. A name
  /// that is also a registered task runs the registered one (warned about at start).
  const std::map<std::string, CommandTaskConfig>* command_tasks = nullptr;
  /// Seconds from a cancel's SIGTERM to a command's process group until its SIGKILL (sooner
  /// when a second SIGUSR1 arrives). Keep it below main's cancel_grace_seconds so the worker
  /// itself survives the escalation.
  double command_kill_grace = 5.0;
};

/// Runs the worker protocol on the given fds until stop/orphan/read error; returns the exit
/// code (the caller _exit()s with it): 0 after kStop, EOF or EPIPE from main (main is gone),
/// or when orphaned; 2 on a protocol error (corrupt stream, unexpected frame, I/O error).
/// Installs the worker's signal dispositions (SIGINT/SIGTERM/SIGPIPE ignored, SIGUSR1 →
/// cancel) and does not restore them: the process is expected to exit afterwards.
int run_worker_loop(int in_fd, int out_fd, const WorkerSettings& settings);

/// The cancel handler's decision, exposed for tests: true when a SIGUSR1 with `si_code` and
/// queued `value` cancels the task with sequence number `current_seq`. A queued signal
/// (SI_QUEUE) must carry the task's low 31 bits; any other origin (kill, tgkill) cancels
/// whatever runs. Async-signal-safe.
bool cancel_matches(int si_code, int value, std::uint64_t current_seq) noexcept;

/// The sival_int main queues with SIGUSR1 to cancel the task with sequence number `seq`.
constexpr int cancel_signal_value(std::uint64_t seq) noexcept {
  return static_cast<int>(seq & 0x7fffffffu);
}

}  // namespace dispatcherd
