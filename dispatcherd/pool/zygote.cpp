#include "dispatcherd/pool/zygote.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "dispatcherd/log.h"
#include "dispatcherd/pool/process_title.h"

namespace dispatcherd {
namespace {

// One datagram on the SOCK_SEQPACKET control socket, in either direction.
struct Packet {
  enum Kind : std::int32_t { kSpawn = 1, kStarted = 2, kFailed = 3, kExited = 4 };
  std::int32_t kind = 0;
  std::int32_t worker_id = -1;
  std::int32_t pid = -1;
  std::int32_t status = 0;  // wait status for kExited, errno for kFailed
};

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

void close_from(int lowest) {
  ::syscall(SYS_close_range, lowest, ~0U, 0);
}

bool send_packet(int sock, const Packet& p, const int* fds = nullptr, int nfds = 0) {
  iovec iov{const_cast<Packet*>(&p), sizeof p};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)];
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<std::size_t>(nfds));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<std::size_t>(nfds));
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * static_cast<std::size_t>(nfds));
  }
  while (true) {
    if (::sendmsg(sock, &msg, MSG_NOSIGNAL) >= 0) return true;
    if (errno != EINTR) return false;
  }
}

// The worker child, right after fork in the zygote: hygiene first, then the worker entry.
[[noreturn]] void become_worker(const WorkerEntry& entry, int worker_id, pid_t zygote_pid,
                                int in_fd, int out_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != zygote_pid) ::_exit(1);  // the zygote died between fork and prctl
  // Keep fds 0-2 and the two pipe ends (moved to 3 and 4); close everything else.
  int in = ::fcntl(in_fd, F_DUPFD_CLOEXEC, 10);
  int out = ::fcntl(out_fd, F_DUPFD_CLOEXEC, 10);
  ::dup2(in, 3);
  ::dup2(out, 4);
  close_from(5);
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::close(devnull);
  }
  std::string name = "dispatcherd-w" + std::to_string(worker_id);
  ::prctl(PR_SET_NAME, name.c_str());
  process_title::set("dispatcherd: worker " + std::to_string(worker_id) + " idle");
  log::set_process_name("worker-" + std::to_string(worker_id));
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int rc = entry(3, 4, worker_id);
  log::flush_pending();
  ::_exit(rc);
}

// The zygote process: spawns workers on request, reaps them, reports exits. Never returns.
[[noreturn]] void zygote_main(int sock, pid_t main_pid, const WorkerEntry& entry) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != main_pid) ::_exit(0);
  ::prctl(PR_SET_NAME, "dispatcherd-zyg");
  process_title::set("dispatcherd: zygote");
  log::set_process_name("zygote");
  ::dup2(sock, 3);
  close_from(4);
  sock = 3;
  ::signal(SIGINT, SIG_IGN);  // Ctrl-C to the group: main decides
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  for (int s : {SIGUSR1, SIGUSR2, SIGHUP}) ::signal(s, SIG_DFL);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_SETMASK, &chld, nullptr);
  int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  const char* fault = std::getenv("DISPATCHERD_FAULT_SPAWN_FAIL_EVERY");
  ZygoteFaults faults{fault ? std::atoi(fault) : 0};
  int spawns = 0;
  pid_t self = ::getpid();

  while (true) {
    pollfd fds[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      ::_exit(2);
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(sfd, &si, sizeof si) > 0) {
      }
      int status;
      pid_t pid;
      while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0)
        send_packet(sock, Packet{Packet::kExited, -1, pid, status});
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      Packet req;
      ssize_t n = ::recv(sock, &req, sizeof req, 0);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) ::_exit(0);  // main is gone
      if (n != static_cast<ssize_t>(sizeof req) || req.kind != Packet::kSpawn) continue;
      ++spawns;
      if (faults.fail_every > 0 && spawns % faults.fail_every == 0) {
        send_packet(sock, Packet{Packet::kFailed, req.worker_id, -1, EAGAIN});
        continue;
      }
      int to_worker[2], from_worker[2];
      if (::pipe2(to_worker, O_CLOEXEC) != 0) {
        send_packet(sock, Packet{Packet::kFailed, req.worker_id, -1, errno});
        continue;
      }
      if (::pipe2(from_worker, O_CLOEXEC) != 0) {
        int err = errno;
        ::close(to_worker[0]);
        ::close(to_worker[1]);
        send_packet(sock, Packet{Packet::kFailed, req.worker_id, -1, err});
        continue;
      }
      pid_t pid = ::fork();
      if (pid == 0) become_worker(entry, req.worker_id, self, to_worker[0], from_worker[1]);
      int err = errno;
      ::close(to_worker[0]);
      ::close(from_worker[1]);
      if (pid < 0) {
        ::close(to_worker[1]);
        ::close(from_worker[0]);
        send_packet(sock, Packet{Packet::kFailed, req.worker_id, -1, err});
        continue;
      }
      int pidfd = pidfd_open(pid);
      int fds_out[3] = {to_worker[1], from_worker[0], pidfd};
      send_packet(sock, Packet{Packet::kStarted, req.worker_id, pid, 0}, fds_out,
                  pidfd >= 0 ? 3 : 2);
      ::close(to_worker[1]);
      ::close(from_worker[0]);
      if (pidfd >= 0) ::close(pidfd);
    }
  }
}

}  // namespace

Zygote::Zygote(WorkerEntry entry) : entry_(std::move(entry)) {
  spawn_zygote();
}

Zygote::~Zygote() {
  if (loop_ && sock_.valid()) loop_->unwatch(sock_.get());
  sock_.reset();  // EOF tells the zygote to exit; PDEATHSIG covers a crash of main
}

void Zygote::spawn_zygote() {
  int sv[2];
  DISPATCHERD_ASSERT(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  pid_t main_pid = ::getpid();
  log::flush_pending();
  pid_t pid = ::fork();
  DISPATCHERD_ASSERT(pid >= 0);
  if (pid == 0) {
    ::close(sv[0]);
    zygote_main(sv[1], main_pid, entry_);
  }
  ::close(sv[1]);
  set_nonblocking(sv[0]);
  sock_.reset(sv[0]);
  pid_ = pid;
  if (loop_) loop_->watch(sock_.get(), kReadable, [this](std::uint32_t) { on_readable(); });
}

void Zygote::attach(EventLoop& loop) {
  loop_ = &loop;
  loop.watch(sock_.get(), kReadable, [this](std::uint32_t) { on_readable(); });
}

void Zygote::zygote_died(int wait_status) {
  LOG_ERROR("zygote pid=" << pid_ << " died (wait status " << wait_status
                          << "); its workers died with it; starting a new zygote");
  if (loop_) loop_->unwatch(sock_.get());
  sock_.reset();
  // Its workers were killed by PDEATHSIG and their exits will never be reported: report them.
  auto dead = std::move(pidfds_);
  pidfds_.clear();
  for (auto& [pid, fd] : dead)
    if (events_.exited) events_.exited(pid, SIGKILL);
  spawn_zygote();
}

void Zygote::launch(int worker_id) {
  Packet req{Packet::kSpawn, worker_id, -1, 0};
  if (!sock_.valid() || !send_packet(sock_.get(), req)) {
    std::string err = std::string("cannot reach the zygote: ") + std::strerror(errno);
    if (events_.start_failed) events_.start_failed(worker_id, err);
  }
}

bool Zygote::signal(pid_t pid, int signo, int value) {
  auto it = pidfds_.find(pid);
  if (it == pidfds_.end() || !it->second.valid()) return false;
  siginfo_t info{};
  info.si_signo = signo;
  info.si_code = SI_QUEUE;
  info.si_pid = ::getpid();
  info.si_uid = ::getuid();
  info.si_value.sival_int = value;
  return ::syscall(SYS_pidfd_send_signal, it->second.get(), signo, &info, 0) == 0;
}

void Zygote::on_readable() {
  while (true) {
    Packet p;
    iovec iov{&p, sizeof p};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // EAGAIN: drained
    }
    if (n == 0) {
      // The zygote is gone; SIGCHLD will tell main and zygote_died() replaces it.
      loop_->unwatch(sock_.get());
      return;
    }
    int fds[3] = {-1, -1, -1};
    int nfds = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        nfds = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        std::memcpy(fds, CMSG_DATA(c), sizeof(int) * static_cast<std::size_t>(std::min(nfds, 3)));
      }
    }
    switch (p.kind) {
      case Packet::kStarted: {
        Fd to(fds[0]), from(fds[1]), pidfd(fds[2]);
        set_nonblocking(to.get());
        set_nonblocking(from.get());
        pidfds_[p.pid] = std::move(pidfd);
        if (events_.started) events_.started(p.worker_id, p.pid, std::move(to), std::move(from));
        break;
      }
      case Packet::kFailed:
        if (events_.start_failed) events_.start_failed(p.worker_id, std::strerror(p.status));
        break;
      case Packet::kExited:
        pidfds_.erase(p.pid);
        if (events_.exited) events_.exited(p.pid, p.status);
        break;
      default:
        LOG_ERROR("zygote sent an unknown report kind " << p.kind);
    }
  }
}

}  // namespace dispatcherd
