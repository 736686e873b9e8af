#pragma once
// A WorkerLauncher that forks nothing: each "worker" is a pair of pipes whose far ends the
// test holds, so a test plays the worker's side of the IPC protocol by hand. Signals are
// recorded; SIGKILL simulates the process dying.

#include <signal.h>
#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/pool/ipc.h"
#include "dispatcherd/pool/launcher.h"

namespace dispatcherd::testing {

/// The fake launcher. Starts are reported on the next loop turn, like the real zygote.
class FakeLauncher : public WorkerLauncher {
 public:
  /// One fake worker process: the test's ends of its pipes.
  struct FakeWorker {
    int worker_id = -1;
    pid_t pid = -1;
    Fd in;   ///< read what main sends (the worker's stdin side)
    Fd out;  ///< write what the worker reports
    ipc::FrameReader reader;
    bool alive = true;
  };
  struct SentSignal {
    pid_t pid;
    int signo;
    int value;
  };

  explicit FakeLauncher(EventLoop& loop) : loop_(loop) {}

  void set_events(Events events) override { events_ = std::move(events); }
  void launch(int worker_id) override;
  bool signal(pid_t pid, int signo, int value) override;
  std::size_t live_processes() const override;

  /// When > 0, the next `fail_next` launches fail.
  int fail_next = 0;
  /// Every launch request, in order.
  std::vector<int> launches;
  /// Every signal sent.
  std::vector<SentSignal> signals;
  /// Fake workers by worker id.
  std::map<int, FakeWorker> workers;

  /// Writes a frame as worker `id` would.
  void send(int id, ipc::FrameType type, std::uint64_t seq = 0, std::string_view payload = {});
  /// Reads the next frame main sent to worker `id` (non-blocking; nullopt if none yet).
  std::optional<ipc::Frame> receive(int id);
  /// Simulates worker `id` exiting with `wait_status`.
  void exit(int id, int wait_status);

 private:
  EventLoop& loop_;
  Events events_;
  pid_t next_pid_ = 10000;
};

}  // namespace dispatcherd::testing
