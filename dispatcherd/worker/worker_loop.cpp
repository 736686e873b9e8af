#include "dispatcherd/worker/worker_loop.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

#include "dispatcherd/log.h"
#include "dispatcherd/message_scan.h"
#include "dispatcherd/pool/ipc.h"
#include "dispatcherd/pool/process_title.h"
#include "dispatcherd/task.h"
#include "dispatcherd/worker/builtin_tasks.h"
#include "dispatcherd/worker/command_task.h"

namespace dispatcherd {
namespace {

using worker::kSelfCheckTaskName;

using ipc::Frame;
using ipc::FrameType;
using ipc::TaskStatus;
using nlohmann::json;

// State shared with the SIGUSR1 handler; sig_atomic_t so each access is one plain store/load.
volatile std::sig_atomic_t g_cancel = 0;  // the running task's cancel flag (TaskContext reads it)
volatile std::sig_atomic_t g_busy = 0;    // 1 while a task and its follow-ups run
volatile std::sig_atomic_t g_seq31 = 0;   // cancel_signal_value() of the running task
// Cancels for tasks not started yet (written to our pipe, maybe prefetched), one slot per
// sequence-number parity: the slot of the task being started and the slot of the one after it
// never collide, so a cancel for the next task cannot be lost while this one starts.
volatile std::sig_atomic_t g_pending[2] = {-1, -1};

void on_sigusr1(int, siginfo_t* info, void*) {
  if (g_busy) {
    if (cancel_matches(info->si_code, info->si_value.sival_int,
                       static_cast<std::uint64_t>(g_seq31)))
      g_cancel = 1;
    // Main may have prefetched the next task (seq + 1) into our pipe and cancelled it.
    else if (info->si_code == SI_QUEUE &&
             info->si_value.sival_int ==
                 cancel_signal_value(static_cast<std::uint64_t>(g_seq31) + 1))
      g_pending[info->si_value.sival_int & 1] = info->si_value.sival_int;
  } else if (info->si_code == SI_QUEUE) {
    // Main may cancel a task it has written before this worker read it; remember the value
    // so the task starts cancelled. A plain kill while idle is ignored, as upstream does.
    g_pending[info->si_value.sival_int & 1] = info->si_value.sival_int;
  }
}

void install_signals() {
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  // Main decides when workers stop: a Ctrl-C or a supervisor's SIGTERM to the whole process
  // group must not kill running tasks. SIGPIPE would kill us instead of returning EPIPE.
  ::sigaction(SIGINT, &ign, nullptr);
  ::sigaction(SIGTERM, &ign, nullptr);
  ::sigaction(SIGPIPE, &ign, nullptr);
  struct sigaction usr {};
  usr.sa_sigaction = on_sigusr1;
  sigemptyset(&usr.sa_mask);
  // No SA_RESTART: a blocking call inside a task returns EINTR so the task sees the cancel.
  usr.sa_flags = SA_SIGINFO;
  ::sigaction(SIGUSR1, &usr, nullptr);
  // Main blocks the signals it reads through signalfd; a forked worker inherits that mask.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Arms the handler for the task with sequence number `seq`. The flag is cleared before busy is
// set, so a cancel arriving in between lands either in g_pending or in the fresh flag.
// Returns true when the task was cancelled before it started (it must not run then).
bool begin_task(std::uint64_t seq) {
  const int seq31 = cancel_signal_value(seq);
  g_cancel = 0;
  g_seq31 = seq31;
  g_busy = 1;
  const bool pending = g_pending[seq31 & 1] == seq31;
  g_pending[seq31 & 1] = -1;
  if (pending) g_cancel = 1;
  return pending;
}

void end_task() {
  g_busy = 0;
}

double now_epoch() {
  timespec t{};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Serializes without ever throwing: invalid UTF-8 in a task's result is replaced.
std::string dump_safe(const json& value) {
  if (value.is_null()) return "null";  // most tasks return nothing: skip the serializer
  try {
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (...) {
    return "null";
  }
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};  // a non-blocking fd from the spawner: wait, then retry
      ::poll(&p, 1, -1);
    } else {
      return false;
    }
  }
  return true;
}

using CommandTasks = std::map<std::string, CommandTaskConfig>;

// What a message names: a registered function or, failing that, a configured command task.
struct Target {
  const TaskEntry* entry = nullptr;
  const CommandTaskConfig* command = nullptr;
  std::string name;  // the command task's name
  explicit operator bool() const { return entry != nullptr || command != nullptr; }
};

// The registered or command task called `name`; on failure an empty Target and `error` set.
Target find_target(const std::string& name, const CommandTasks* commands, std::string& error) {
  Target target;
  target.entry = find_task(name);
  if (target.entry == nullptr && commands != nullptr) {
    if (auto c = commands->find(name); c != commands->end()) {
      target.command = &c->second;
      target.name = name;
    }
  }
  if (!target) error = "unknown task '" + name + "'";
  return target;
}

// Checks a (sub-)message and finds its task; on failure returns an empty Target and sets
// `error`.
Target resolve(const json& message, const CommandTasks* commands, std::string& error) {
  if (!message.is_object()) {
    error = std::string("task message must be an object, got ") + message.type_name();
    return {};
  }
  Target target;
  if (auto sc = message.find("self_check"); sc != message.end() && *sc == true) {
    target.entry = find_task(kSelfCheckTaskName);
    if (target.entry == nullptr) {
      error = "the self-check task is not registered";
      return {};
    }
  } else {
    auto t = message.find("task");
    if (t == message.end()) {
      error = "message has no 'task'";
      return {};
    }
    if (!t->is_string()) {
      error = std::string("field 'task' must be a string, got ") + t->type_name();
      return {};
    }
    target = find_target(t->get_ref<const std::string&>(), commands, error);
    if (!target) return {};
  }
  if (auto a = message.find("args"); a != message.end() && !a->is_array()) {
    error = std::string("field 'args' must be an array, got ") + a->type_name();
    return {};
  }
  if (auto k = message.find("kwargs"); k != message.end() && !k->is_object()) {
    error = std::string("field 'kwargs' must be an object, got ") + k->type_name();
    return {};
  }
  return target;
}

// The `task` of a message for log lines.
std::string task_name(const json& message) {
  if (message.is_object()) {
    auto t = message.find("task");
    if (t != message.end() && t->is_string()) return t->get<std::string>();
  }
  return "<none>";
}

struct Outcome {
  TaskStatus status = TaskStatus::kSucceeded;
  json value;  // the task's return value; null unless it succeeded
  std::string error;
};

class Loop {
 public:
  Loop(int in_fd, int out_fd, const WorkerSettings& s)
      : in_(in_fd),
        out_(out_fd),
        s_(s),
        title_prefix_("dispatcherd: worker " + std::to_string(s.worker_id) + " ") {
    control_fn_ = [this](const std::string& c, const json& d) { return control(c, d); };
  }

  int run() {
    install_signals();
    log::set_process_name("worker-" + std::to_string(s_.worker_id));
    if (s_.command_tasks != nullptr)
      for (const auto& [name, cmd] : *s_.command_tasks)
        if (find_task(name) != nullptr)
          LOG_WARNING("Worker " << s_.worker_id << " task '" << name
                                << "' is both registered and a command task under "
                                   "extensions.tasks; the registered task runs");
    call_hook("on_start", [&](const WorkerHooks& h) {
      if (h.on_start) h.on_start(s_.worker_id);
    });
    if (!send(FrameType::kReady, 0, {})) return write_failure_code();
    for (;;) {
      Frame f;
      switch (prefetched_ ? take_prefetched(f) : next_frame(f, /*idle=*/true)) {
        case Got::kFrame:
          break;
        case Got::kEof:
          LOG_DEBUG("Worker " << s_.worker_id << " input closed, the main process is gone");
          return 0;
        case Got::kOrphaned:
          LOG_WARNING("Worker " << s_.worker_id
                                << " my parent PID changed, this process has been orphaned");
          return 0;
        case Got::kCorrupt:
          LOG_ERROR("Worker " << s_.worker_id << " received a corrupt frame stream from main");
          return 2;
        case Got::kIoError:
        case Got::kCancelled:
          LOG_ERROR("Worker " << s_.worker_id << " read from main failed: " << strerror(errno));
          return 2;
      }
      switch (f.type) {
        case FrameType::kTask:
          run_task(f);
          if (exit_code_ >= 0) return exit_code_;
          if (stop_pending_) return shutdown();
          break;
        case FrameType::kStop:
          LOG_DEBUG("Worker " << s_.worker_id << " exiting main loop due to stop message");
          return shutdown();
        case FrameType::kControlReply:
          // The answer to a control call that a cancel interrupted.
          LOG_DEBUG("Worker " << s_.worker_id << " ignoring a late control reply, seq=" << f.seq);
          break;
        default:
          LOG_ERROR("Worker " << s_.worker_id << " protocol error: unexpected frame type "
                              << static_cast<int>(f.type));
          return 2;
      }
    }
  }

 private:
  enum class Got { kFrame, kEof, kCorrupt, kIoError, kOrphaned, kCancelled };

  Got take_prefetched(Frame& out) {
    out = std::move(*prefetched_);
    prefetched_.reset();
    return Got::kFrame;
  }

  // The next frame from main. Idle: checks for orphaning and runs on_idle every idle_timeout.
  // Busy (a control call): an EINTR with the cancel flag set returns kCancelled.
  Got next_frame(Frame& out, bool idle) {
    for (;;) {
      if (auto f = reader_.next()) {
        out = std::move(*f);
        return Got::kFrame;
      }
      if (reader_.corrupt()) return Got::kCorrupt;
      if (idle) {
        if (s_.main_pid > 0 && orphan_check_due() && ::getppid() != s_.main_pid)
          return Got::kOrphaned;
        if (s_.idle_timeout > 0) {
          pollfd p{in_, POLLIN, 0};
          int r = ::poll(&p, 1, static_cast<int>(std::ceil(s_.idle_timeout * 1000)));
          if (r == 0) {
            call_hook("on_idle", [](const WorkerHooks& h) {
              if (h.on_idle) h.on_idle();
            });
            continue;
          }
          if (r < 0) {
            if (errno == EINTR) continue;
            return Got::kIoError;
          }
        }
      }
      ssize_t n = ::read(in_, rbuf_.get(), kReadBufferSize);
      if (n > 0) {
        reader_.feed(rbuf_.get(), static_cast<std::size_t>(n));
      } else if (n == 0) {
        return Got::kEof;
      } else if (errno == EINTR) {
        if (!idle && g_cancel) return Got::kCancelled;
      } else if (errno == EAGAIN) {
        pollfd p{in_, POLLIN, 0};  // a non-blocking fd from the spawner: wait, then retry
        if (::poll(&p, 1, -1) < 0 && errno == EINTR && !idle && g_cancel) return Got::kCancelled;
      } else {
        return Got::kIoError;
      }
    }
  }

  // Whether to ask getppid() before this wait: on the first wait, then at most once a second.
  // PR_SET_PDEATHSIG already ends a worker whose parent dies; the check is upstream's (§7.7)
  // and, once per wait, was a third of a worker's syscalls in a burst.
  bool orphan_check_due() {
    timespec t{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &t);  // the vDSO, no syscall
    const double now = static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
    if (last_orphan_check_ >= 0 && now - last_orphan_check_ < 1.0) return false;
    last_orphan_check_ = now;
    return true;
  }

  bool send(FrameType type, std::uint64_t seq, std::string_view payload) {
    wbuf_.clear();
    ipc::append_frame(wbuf_, type, seq, payload);
    if (write_all(out_, wbuf_)) return true;
    write_errno_ = errno;
    return false;
  }

  // EPIPE means main is gone, which is an orderly end for a worker; anything else is not.
  int write_failure_code() const {
    if (write_errno_ == EPIPE) return 0;
    LOG_ERROR("Worker " << s_.worker_id << " write to main failed: " << strerror(write_errno_));
    return 2;
  }

  int shutdown() {
    call_hook("on_shutdown", [](const WorkerHooks& h) {
      if (h.on_shutdown) h.on_shutdown();
    });
    if (!send(FrameType::kShutdown, 0, {})) return write_failure_code();
    return 0;
  }

  template <class F>
  void call_hook(const char* name, F&& f) {
    try {
      f(worker_hooks());
    } catch (const std::exception& e) {
      LOG_ERROR("Worker " << s_.worker_id << " hook " << name << " failed: " << e.what());
    } catch (...) {
      LOG_ERROR("Worker " << s_.worker_id << " hook " << name << " failed");
    }
  }

  Outcome invoke(const Target& target, const TaskInput& message, const std::string& uuid,
                 double received_at = 0) {
    TaskContext ctx(message, uuid, s_.worker_id, &g_cancel, control_fn_, received_at);
    try {
      if (target.command != nullptr)
        return {TaskStatus::kSucceeded,
                worker::run_command_task(target.name, *target.command, ctx, s_.command_kill_grace),
                {}};
      return {TaskStatus::kSucceeded, target.entry->fn(ctx), {}};
    } catch (const TaskCancelled&) {
      return {TaskStatus::kCancelled, nullptr, "task canceled"};
    } catch (const std::exception& e) {
      return {TaskStatus::kFailed, nullptr, e.what()};
    } catch (...) {
      return {TaskStatus::kFailed, nullptr, "the task threw a non-standard exception"};
    }
  }

  // ps shows "dispatcherd: worker 3 running demo.hello (uuid=...)" while a task runs and
  // "dispatcherd: worker 3 idle" otherwise. Built by copying into a stack buffer (no
  // allocation, and no snprintf: twice per task, it was ~4% of a no-op task's worker CPU).
  void show_title(std::string_view name, std::string_view uuid) {
    char buf[256];
    std::size_t n = 0;
    auto put = [&](std::string_view s) {
      const std::size_t k = std::min(s.size(), sizeof buf - n);
      std::memcpy(buf + n, s.data(), k);
      n += k;
    };
    put(title_prefix_);
    if (name.empty()) {
      put("idle");
    } else {
      put("running ");
      put(name);
      put(" (uuid=");
      put(uuid);
      put(")");
    }
    process_title::set(std::string_view(buf, n));
  }

  void run_task(const Frame& frame) {
    ipc::DonePayload done;
    done.time_started = now_epoch();
    seq_ = frame.seq;
    const bool cancelled_before_start = begin_task(frame.seq);
    json message;
    std::string uuid = "<unknown>";
    Outcome out;
    Target target;
    if (cancelled_before_start) {
      // Cancelled while it waited in our pipe (a prefetched or just-written task): never run.
      if (auto tp = ipc::decode_task(frame.payload)) uuid = std::string(tp->uuid);
      LOG_DEBUG("Worker " << s_.worker_id << " skipping task (uuid=" << uuid
                          << "), canceled before it started");
      end_task();
      done.status = TaskStatus::kCancelled;
      done.result = "null";
      done.error = "task canceled before it started";
      done.is_stopping = stop_pending_ || exit_code_ >= 0;
      done.time_finish = now_epoch();
      if (!send(FrameType::kDone, frame.seq, ipc::encode_done(done)) && exit_code_ < 0)
        exit_code_ = write_failure_code();
      return;
    }
    // The common case takes main's one-pass scan instead of a parse: a task that never asks
    // for its args, kwargs or message (a no-op, say) never pays for a JSON tree. Callbacks,
    // errbacks, the self-check and worker hooks that want the message take the parsed path.
    const WorkerHooks& hooks = worker_hooks();
    std::optional<TaskInput> lazy;
    std::string name;
    const auto tp = ipc::decode_task(frame.payload);
    std::optional<ScannedTask> scanned;
    if (tp && !hooks.before_task && !hooks.after_task) scanned = scan_task_message(tp->body);
    if (scanned && !scanned->needs_tree) {
      lazy.emplace(tp->body, tp->uuid, tp->channel);
      if (!tp->uuid.empty())
        uuid = std::string(tp->uuid);
      else if (scanned->fields.uuid)
        uuid = *scanned->fields.uuid;
      name = std::move(scanned->fields.task);
      target = find_target(name, s_.command_tasks, out.error);
    } else if (tp) {
      message = json::parse(tp->body, nullptr, /*allow_exceptions=*/false);
      // Text that is not JSON is a bare task name (upstream-spec §2.1), should main pass one.
      if (message.is_discarded()) message = json{{"task", std::string(tp->body)}};
      if (message.is_object()) {
        if (!tp->uuid.empty()) message["uuid"] = tp->uuid;
        if (!tp->channel.empty()) message["channel"] = tp->channel;
        if (auto u = message.find("uuid"); u != message.end() && u->is_string())
          uuid = u->get<std::string>();
      }
      target = resolve(message, s_.command_tasks, out.error);
      name = task_name(message);
    } else {
      out.error = "malformed task frame";
      name = task_name(message);
    }
    if (target) {
      show_title(name, uuid);
      LOG_DEBUG("Worker " << s_.worker_id << " running task " << name << " (uuid=" << uuid << ")");
      call_hook("before_task", [&](const WorkerHooks& h) {
        if (h.before_task) h.before_task(message);
      });
      const double received_at = tp ? tp->received_at : 0;
      out = lazy ? invoke(target, *lazy, uuid, received_at)
                 : invoke(target, TaskInput(message), uuid, received_at);
    } else {
      out.status = TaskStatus::kFailed;
    }
    if (out.status == TaskStatus::kFailed) {
      LOG_ERROR("Worker " << s_.worker_id << " failed to run task " << name << " (uuid=" << uuid
                          << "): " << out.error);
      if (!lazy) run_followups(message, "errbacks", uuid, name);
    } else if (out.status == TaskStatus::kCancelled) {
      LOG_DEBUG("Worker " << s_.worker_id << " task " << name << " (uuid=" << uuid << ") canceled");
    }
    if (!lazy) run_followups(message, "callbacks", uuid, name);
    if (target) {
      call_hook("after_task", [&](const WorkerHooks& h) {
        if (h.after_task) h.after_task(message, out.value);
      });
    }
    end_task();
    if (target) show_title({}, {});
    if (exit_code_ == 0) return;  // main is gone: nobody to tell
    done.status = out.status;
    done.is_stopping = stop_pending_ || exit_code_ >= 0;
    done.result = dump_safe(out.value);
    done.error = std::move(out.error);
    done.time_finish = now_epoch();
    LOG_DEBUG("Worker " << s_.worker_id << " finished task " << name << " (uuid=" << uuid << ")");
    if (!send(FrameType::kDone, frame.seq, ipc::encode_done(done)) && exit_code_ < 0)
      exit_code_ = write_failure_code();
  }

  // Runs the errbacks or callbacks of `message` (§7.10): each a whole sub-message, run with
  // the parent's uuid; results are discarded and failures only logged. Stops early once the
  // task is cancelled or the worker is about to stop.
  void run_followups(const json& message, const char* key, const std::string& uuid,
                     const std::string& parent) {
    if (!message.is_object()) return;
    auto list = message.find(key);
    if (list == message.end() || list->is_null()) return;
    if (!list->is_array()) {
      LOG_ERROR("Worker " << s_.worker_id << " task " << parent << " (uuid=" << uuid << "): field '"
                          << key << "' must be an array, ignored");
      return;
    }
    for (const json& item : *list) {
      if (g_cancel || stop_pending_ || exit_code_ >= 0) {
        LOG_DEBUG("Worker " << s_.worker_id << " skipping the remaining " << key << " of task "
                            << parent << " (uuid=" << uuid << ")");
        return;
      }
      json sub = item;
      if (sub.is_object()) sub["uuid"] = uuid;
      std::string error;
      Outcome r;
      if (const Target t = resolve(sub, s_.command_tasks, error)) {
        r = invoke(t, TaskInput(sub), uuid);
      } else {
        r.status = TaskStatus::kFailed;
        r.error = std::move(error);
      }
      if (r.status == TaskStatus::kFailed)
        LOG_ERROR("Worker " << s_.worker_id << " failed to run " << key << " task "
                            << task_name(sub) << " of task " << parent << " (uuid=" << uuid
                            << "): " << r.error);
    }
  }

  // The bind control call (§4.5): one kControl frame, then frames until the matching reply.
  json control(const std::string& command, const json& data) {
    if (exit_code_ >= 0) throw std::runtime_error("control: the worker is exiting");
    json request{{"command", command}, {"control_data", data}};
    if (!send(FrameType::kControl, seq_, dump_safe(request))) {
      exit_code_ = write_failure_code();
      throw std::runtime_error("control: cannot write to the main process");
    }
    for (;;) {
      Frame f;
      switch (next_frame(f, /*idle=*/false)) {
        case Got::kFrame:
          break;
        case Got::kCancelled:
          throw TaskCancelled();
        case Got::kEof:
          exit_code_ = 0;
          throw std::runtime_error("control: the main process is gone");
        case Got::kCorrupt:
        case Got::kIoError:
        case Got::kOrphaned:
          LOG_ERROR("Worker " << s_.worker_id << " lost the channel to main during control");
          exit_code_ = 2;
          throw std::runtime_error("control: the channel to main failed");
      }
      switch (f.type) {
        case FrameType::kControlReply: {
          if (f.seq != seq_) break;  // an earlier, interrupted call's answer
          json reply = json::parse(f.payload, nullptr, /*allow_exceptions=*/false);
          if (reply.is_discarded()) throw std::runtime_error("control: invalid reply from main");
          return reply;
        }
        case FrameType::kStop:
          stop_pending_ = true;  // honoured once the task is done
          break;
        case FrameType::kTask:
          // Main prefetched the next task: it runs after this one.
          if (prefetched_) {
            LOG_ERROR("Worker " << s_.worker_id << " protocol error: two tasks sent ahead");
            exit_code_ = 2;
            throw std::runtime_error("control: protocol error");
          }
          prefetched_ = std::move(f);
          break;
        default:
          LOG_ERROR("Worker " << s_.worker_id << " protocol error: frame type "
                              << static_cast<int>(f.type) << " while waiting for a control reply");
          exit_code_ = 2;
          throw std::runtime_error("control: protocol error");
      }
    }
  }

  int in_;
  int out_;
  WorkerSettings s_;
  const std::string title_prefix_;  // "dispatcherd: worker N "
  ipc::FrameReader reader_;
  double last_orphan_check_ = -1;  // CLOCK_MONOTONIC_COARSE seconds; -1: never
  static constexpr std::size_t kReadBufferSize = 64 * 1024;
  // Left uninitialised: zero-filling 64 KiB touched 16 fresh pages before the worker said
  // ready (~45 us a page fault on a VM); read() touches only what a frame fills.
  std::unique_ptr<char[]> rbuf_ = std::make_unique_for_overwrite<char[]>(kReadBufferSize);
  std::string wbuf_;
  TaskContext::ControlFn control_fn_;
  std::uint64_t seq_ = 0;            // the running task's sequence number
  bool stop_pending_ = false;        // a kStop arrived during a control call
  std::optional<Frame> prefetched_;  // a task frame that arrived during a control call
  int exit_code_ = -1;               // ≥ 0: leave with this code after the current task
  int write_errno_ = 0;
};

}  // namespace

bool cancel_matches(int si_code, int value, std::uint64_t current_seq) noexcept {
  if (si_code == SI_QUEUE) return value == cancel_signal_value(current_seq);
  return true;
}

int run_worker_loop(int in_fd, int out_fd, const WorkerSettings& settings) {
  Loop loop(in_fd, out_fd, settings);
  return loop.run();
}

}  // namespace dispatcherd
