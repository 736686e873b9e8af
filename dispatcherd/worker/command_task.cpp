#include "dispatcherd/worker/command_task.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "dispatcherd/fd.h"
#include "dispatcherd/log.h"
#include "dispatcherd/worker/command_template.h"

extern char** environ;  // NOLINT: POSIX declares it nowhere in C++ headers

namespace dispatcherd::worker {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = 64 * 1024;
// Reads of leftover output after the command ended: a descendant that left the process group
// may keep writing forever, so draining stops after this many chunks even without EOF.
constexpr int kMaxDrainReads = 256;

// Everything the children need, built before fork so they only make system calls.
struct Launch {
  std::vector<std::string> argv_text;
  std::vector<char*> argv;
  std::vector<std::string> env_text;
  std::vector<char*> envp;
  const char* cwd = nullptr;
};

Launch prepare(const CommandTaskConfig& task, std::vector<std::string> argv) {
  Launch l;
  l.argv_text = std::move(argv);
  for (std::string& s : l.argv_text) l.argv.push_back(s.data());
  l.argv.push_back(nullptr);
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    if (task.env.count(std::string(kv.substr(0, kv.find('=')))) == 0) l.env_text.emplace_back(kv);
  }
  for (const auto& [k, v] : task.env) l.env_text.push_back(k + "=" + v);
  for (std::string& s : l.env_text) l.envp.push_back(s.data());
  l.envp.push_back(nullptr);
  if (task.cwd) l.cwd = task.cwd->c_str();
  return l;
}

struct Pipe {
  Fd r, w;
};

Pipe make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("cannot start command: pipe: ") + std::strerror(errno));
  return {Fd(p[0]), Fd(p[1])};
}

// ---- child side: only system calls from here to exec / _exit ----

void close_fds(unsigned first, unsigned last) {
  if (first > last) return;
  if (::close_range(first, last, 0) == 0) return;
  // ENOSYS before Linux 5.9: close one by one up to the fd limit.
  long max = ::sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > (1L << 20)) max = 1L << 16;
  for (long fd = first; fd < max && fd <= static_cast<long>(last); ++fd)
    ::close(static_cast<int>(fd));
}

// Closes every fd from 3 up except those in `keep`.
void close_all_except(std::initializer_list<int> keep) {
  std::array<int, 4> k{};
  std::size_t n = 0;
  for (int fd : keep)
    if (fd >= 3 && n < k.size()) k[n++] = fd;
  // Insertion sort: a handful of fds (std::sort trips GCC 12's -Warray-bounds here).
  for (std::size_t i = 1; i < n; ++i)
    for (std::size_t j = i; j > 0 && k[j - 1] > k[j]; --j) std::swap(k[j - 1], k[j]);
  unsigned next = 3;
  for (std::size_t i = 0; i < n; ++i) {
    const auto fd = static_cast<unsigned>(k[i]);
    if (fd > next) close_fds(next, fd - 1);
    next = std::max(next, fd + 1);
  }
  close_fds(next, ~0U);
}

void write_parts(int fd, std::initializer_list<std::string_view> parts) {
  for (std::string_view p : parts)
    while (!p.empty()) {
      ssize_t n = ::write(fd, p.data(), p.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      p.remove_prefix(static_cast<std::size_t>(n));
    }
}

[[noreturn]] void start_failed(const char* what, const char* arg, int err) {
  write_parts(2, {"dispatcherd: ", what, " '", arg, "': ", std::strerror(err), "\n"});
  ::_exit(kCommandStartFailedStatus);
}

// The command process: DESIGN §3 child hygiene, then exec.
[[noreturn]] void command_main(Launch& l, pid_t keeper, int in_r, int out_w) {
  // Everything the worker ignored (SIGINT, SIGTERM, SIGPIPE) would stay ignored across exec:
  // a `cat` killed by nothing but SIGPIPE would loop on EPIPE. Handlers are reset by exec, but
  // resetting every signal here is simplest and also covers the keeper's choices.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int s = 1; s < NSIG; ++s)
    if (s != SIGKILL && s != SIGSTOP) ::sigaction(s, &dfl, nullptr);
  // glibc refuses its two internal signals (32, 33), yet an ignored disposition for them
  // inherited from whoever started the service would survive exec: reset them with the raw
  // system call (safe here: this process execs next and runs no more glibc threading code).
  struct KernelSigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    unsigned long mask;
  } kdfl{SIG_DFL, 0, nullptr, 0};
  for (int s = 32; s < SIGRTMIN; ++s) ::syscall(SYS_rt_sigaction, s, &kdfl, nullptr, sizeof kdfl.mask);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != keeper) ::_exit(kCommandStartFailedStatus);  // keeper died before prctl
  // Moved above 2 first so that no dup2 below can overwrite the other pipe end.
  const int in = ::fcntl(in_r, F_DUPFD, 3);
  const int out = ::fcntl(out_w, F_DUPFD, 3);
  if (in < 0 || out < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0)
    ::_exit(kCommandStartFailedStatus);
  close_fds(3, ~0U);
  if (l.cwd != nullptr && ::chdir(l.cwd) != 0)
    start_failed("cannot change directory to", l.cwd, errno);
  // execvp searches the PATH of `environ`, so a PATH set in the task's env is honoured.
  environ = l.envp.data();
  ::execvp(l.argv[0], l.argv.data());
  start_failed("cannot execute", l.argv[0], errno);
}

volatile std::sig_atomic_t g_keeper_worker = 0;  // the keeper's worker pid (keeper only)

// The keeper's PR_SET_PDEATHSIG handler. The kernel reparents before it signals, so a changed
// parent tells a real worker death from a stray SIGHUP.
void on_worker_death(int) {
  if (::getppid() != g_keeper_worker) ::kill(0, SIGKILL);
}

// The keeper: leader of the command's process group, see command_task.h. Reports the
// command's wait status on `status_w`, then kills what is left of the group, itself included.
[[noreturn]] void keeper_main(Launch& l, pid_t worker, int in_r, int out_w, int status_w) {
  ::setpgid(0, 0);
  g_keeper_worker = worker;
  struct sigaction sa {};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_worker_death;
  ::sigaction(SIGHUP, &sa, nullptr);
  // It has no task to cancel and no terminal to listen to.
  sa.sa_handler = SIG_IGN;
  for (int s : {SIGINT, SIGPIPE, SIGUSR1}) ::sigaction(s, &sa, nullptr);
  // The cancel's SIGTERM to the group is meant for the command; the keeper must live on to
  // report. SIGTERM stays blocked as the worker forked us (its disposition is not touched:
  // setting SIG_IGN would discard a pending one). A blocked signal is kept pending, so a
  // cancel that came before the command existed is seen below, and the command, born with it
  // blocked, gets one sent meanwhile as soon as its dispositions are back to default.
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ::sigprocmask(SIG_SETMASK, &term, nullptr);
  ::prctl(PR_SET_NAME, "dispatcherd-cmd");
  ::prctl(PR_SET_PDEATHSIG, SIGHUP);
  if (::getppid() != worker) ::_exit(0);  // the worker died before prctl: start nothing
  // The worker's copies of the pipe ends (stdin writer, output reader) must not stay open
  // here, or the command would never see EOF on stdin; nor its channel to main.
  close_all_except({in_r, out_w, status_w});
  const pid_t self = ::getpid();
  const pid_t cmd = ::fork();
  if (cmd == 0) command_main(l, self, in_r, out_w);
  sigset_t pending;
  if (cmd > 0 && ::sigpending(&pending) == 0 && sigismember(&pending, SIGTERM) == 1)
    ::kill(cmd, SIGTERM);  // the cancel reached the group before the command was in it
  int status = kCommandStartFailedStatus << 8;  // as if exited 127
  if (cmd < 0) {
    write_parts(out_w,
                {"dispatcherd: cannot start the command: fork: ", std::strerror(errno), "\n"});
  }
  ::close(in_r);
  ::close(out_w);
  if (cmd > 0)
    while (::waitpid(cmd, &status, 0) < 0 && errno == EINTR) {
    }
  write_parts(status_w, {std::string_view(reinterpret_cast<const char*>(&status), sizeof status)});
  ::kill(0, SIGKILL);  // background jobs the command left behind (and this process)
  ::_exit(0);
}

// ---- worker side ----

// Blocks SIGUSR1 for its lifetime (restoring the old mask on every exit path) so the cancel
// flag is only ever checked with the signal blocked and waited for inside ppoll. SIGTERM
// (ignored by workers anyway) is blocked too so that the keeper is born with it blocked, see
// keeper_main.
class CancelSignalBlock {
 public:
  CancelSignalBlock() {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &block, &old_);
    wait_ = old_;
    sigdelset(&wait_, SIGUSR1);
  }
  CancelSignalBlock(const CancelSignalBlock&) = delete;
  CancelSignalBlock& operator=(const CancelSignalBlock&) = delete;
  ~CancelSignalBlock() { ::sigprocmask(SIG_SETMASK, &old_, nullptr); }
  const sigset_t* wait_mask() const { return &wait_; }

 private:
  sigset_t old_{};
  sigset_t wait_{};
};

// The keeper process: killed with its whole group and reaped if the task leaves early.
class Keeper {
 public:
  explicit Keeper(pid_t pid) : pid_(pid) {}
  Keeper(const Keeper&) = delete;
  Keeper& operator=(const Keeper&) = delete;
  ~Keeper() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);  // in case its setpgid has not happened
    reap();
  }
  pid_t pid() const { return pid_; }
  /// Waits for the keeper to exit; returns its wait status.
  int reap() {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return st;
  }

 private:
  pid_t pid_;
};

// The last `cap` bytes of a stream; trimmed lazily so each byte is moved O(1) times.
class Tail {
 public:
  explicit Tail(std::size_t cap) : cap_(cap) {}
  void append(const char* data, std::size_t n) {
    if (cap_ == 0) return;
    if (n >= cap_) {
      buf_.assign(data + (n - cap_), cap_);
      return;
    }
    buf_.append(data, n);
    if (buf_.size() > cap_ && buf_.size() - cap_ > cap_) buf_.erase(0, buf_.size() - cap_);
  }
  std::string str() const { return buf_.size() > cap_ ? buf_.substr(buf_.size() - cap_) : buf_; }

 private:
  std::size_t cap_;
  std::string buf_;
};

// The tail as log/error text: valid UTF-8 (a cut character or binary output is replaced, so
// the error survives JSON encoding later) without trailing blank lines.
std::string printable(const std::string& raw) {
  std::string text = json::parse(json(raw).dump(-1, ' ', false, json::error_handler_t::replace))
                         .get<std::string>();
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

timespec to_timespec(Clock::duration d) {
  auto ns =
      std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  return {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
}

// How the wait ended.
struct Ended {
  bool have_status = false;  // the keeper reported the command's wait status
  int status = 0;
  bool cancelled = false;
};

// Feeds stdin, collects output and waits for the keeper's report, acting on cancel.
Ended supervise(const TaskContext& ctx, const CancelSignalBlock& blocked, pid_t group,
                std::string_view input, Fd& in_w, Fd& out_r, Fd& status_r, Tail& tail,
                double kill_grace_seconds) {
  Ended end;
  std::vector<char> buf(kReadChunk);
  std::array<char, sizeof(int)> report{};
  std::size_t report_got = 0;
  bool killed = false;
  Clock::time_point kill_at{};
  if (input.empty()) in_w.reset();
  for (;;) {
    if (!end.cancelled && ctx.cancelled()) {
      end.cancelled = true;
      ::kill(-group, SIGTERM);
      kill_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(kill_grace_seconds));
    }
    if (end.cancelled && !killed && Clock::now() >= kill_at) {
      ::kill(-group, SIGKILL);
      killed = true;
    }
    std::array<pollfd, 3> fds{};
    nfds_t n = 0;
    fds[n++] = {status_r.get(), POLLIN, 0};
    const nfds_t out_i = out_r ? n++ : 0;
    if (out_r) fds[out_i] = {out_r.get(), POLLIN, 0};
    const nfds_t in_i = in_w ? n++ : 0;
    if (in_w) fds[in_i] = {in_w.get(), POLLOUT, 0};
    timespec left{};
    const bool timed = end.cancelled && !killed;
    if (timed) left = to_timespec(kill_at - Clock::now());
    if (::ppoll(fds.data(), n, timed ? &left : nullptr, blocked.wait_mask()) < 0) {
      if (errno != EINTR) throw std::runtime_error(std::string("ppoll: ") + std::strerror(errno));
      // Only SIGUSR1 has a handler in a worker: a signal after the cancel is main insisting.
      if (end.cancelled && !killed) kill_at = Clock::now();
      continue;
    }
    if (in_w && fds[in_i].revents != 0) {
      ssize_t w = ::write(in_w.get(), input.data(), input.size());
      if (w > 0) input.remove_prefix(static_cast<std::size_t>(w));
      // All written: EOF tells the command. EPIPE: it does not read stdin, which is fine.
      if (input.empty() || (w < 0 && errno != EAGAIN && errno != EINTR)) in_w.reset();
    }
    if (out_r && fds[out_i].revents != 0) {
      ssize_t r = ::read(out_r.get(), buf.data(), buf.size());
      if (r > 0) tail.append(buf.data(), static_cast<std::size_t>(r));
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) out_r.reset();
    }
    if (fds[0].revents != 0) {
      ssize_t r = ::read(status_r.get(), report.data() + report_got, report.size() - report_got);
      if (r > 0) report_got += static_cast<std::size_t>(r);
      if (report_got == report.size()) {
        end.have_status = true;
        std::memcpy(&end.status, report.data(), sizeof end.status);
        return end;
      }
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return end;  // keeper died
    }
  }
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

}  // namespace

json run_command_task(const std::string& name, const CommandTaskConfig& task,
                      const TaskContext& ctx, double kill_grace_seconds) {
  auto argv = expand_command(task, ctx.kwargs());
  if (!argv) throw std::invalid_argument(argv.error().message);
  Launch launch = prepare(task, std::move(*argv));
  const std::string input = ctx.message().dump(-1, ' ', false, json::error_handler_t::replace);
  const std::string who = "Worker " + std::to_string(ctx.worker_id()) + " command task " + name +
                          " (uuid=" + ctx.uuid() + ")";

  CancelSignalBlock blocked;
  if (ctx.cancelled()) throw TaskCancelled();  // do not start what is already cancelled
  Pipe in = make_pipe();
  Pipe out = make_pipe();
  Pipe status = make_pipe();
  const pid_t worker = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0)
    throw std::runtime_error(std::string("cannot start command: fork: ") + std::strerror(errno));
  if (pid == 0) keeper_main(launch, worker, in.r.get(), out.w.get(), status.w.get());
  Keeper keeper(pid);
  // Also here, not only in the keeper: a cancel right after fork must find the group.
  ::setpgid(pid, pid);
  in.r.reset();
  out.w.reset();
  status.w.reset();
  set_nonblocking(in.w.get());
  set_nonblocking(out.r.get());
  set_nonblocking(status.r.get());
  LOG_DEBUG(who << " started " << launch.argv_text[0] << ", process group " << pid);

  Tail tail(task.output_tail_bytes);
  Ended end = supervise(ctx, blocked, pid, input, in.w, out.r, status.r, tail, kill_grace_seconds);
  in.w.reset();
  // The command's output is all in the pipe once its status is known; take what is there.
  std::vector<char> buf(kReadChunk);
  for (int i = 0; out.r && i < kMaxDrainReads; ++i) {
    ssize_t r = ::read(out.r.get(), buf.data(), buf.size());
    if (r <= 0 && !(r < 0 && errno == EINTR)) break;
    if (r > 0) tail.append(buf.data(), static_cast<std::size_t>(r));
  }
  const int keeper_status = keeper.reap();
  const std::string text = printable(tail.str());
  const std::string suffix = text.empty() ? "" : "; output tail: " + text;

  if (end.cancelled) {
    LOG_DEBUG(who << " cancelled" << suffix);
    throw TaskCancelled();
  }
  if (!end.have_status)
    throw std::runtime_error("command supervisor process " + describe(keeper_status) +
                             " before the command ended" + suffix);
  if (WIFEXITED(end.status) && WEXITSTATUS(end.status) == 0) {
    LOG_DEBUG(who << " exited with status 0" << suffix);
    return json{{"exit_code", 0}};
  }
  throw std::runtime_error("command " + describe(end.status) + suffix);
}

}  // namespace dispatcherd::worker
