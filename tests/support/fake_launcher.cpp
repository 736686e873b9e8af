#include "fake_launcher.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace dispatcherd::testing {

void FakeLauncher::launch(int worker_id) {
  launches.push_back(worker_id);
  if (fail_next > 0) {
    --fail_next;
    loop_.defer([this, worker_id] { events_.start_failed(worker_id, "injected failure"); });
    return;
  }
  int to[2], from[2];
  if (::pipe2(to, O_CLOEXEC | O_NONBLOCK) != 0 || ::pipe2(from, O_CLOEXEC | O_NONBLOCK) != 0)
    return;
  FakeWorker& w = workers[worker_id];
  w.worker_id = worker_id;
  w.pid = next_pid_++;
  w.in.reset(to[0]);
  w.out.reset(from[1]);
  Fd main_to(to[1]), main_from(from[0]);
  auto holder = std::make_shared<std::pair<Fd, Fd>>(std::move(main_to), std::move(main_from));
  pid_t pid = w.pid;
  loop_.defer([this, worker_id, pid, holder] {
    events_.started(worker_id, pid, std::move(holder->first), std::move(holder->second));
  });
}

bool FakeLauncher::signal(pid_t pid, int signo, int value) {
  signals.push_back({pid, signo, value});
  for (auto& [id, w] : workers) {
    if (w.pid == pid && w.alive) {
      if (signo == SIGKILL) exit(id, SIGKILL);
      return true;
    }
  }
  return false;
}

std::size_t FakeLauncher::live_processes() const {
  std::size_t n = 0;
  for (auto& [id, w] : workers)
    if (w.alive) ++n;
  return n;
}

void FakeLauncher::send(int id, ipc::FrameType type, std::uint64_t seq, std::string_view payload) {
  std::string buf;
  ipc::append_frame(buf, type, seq, payload);
  [[maybe_unused]] ssize_t n = ::write(workers.at(id).out.get(), buf.data(), buf.size());
}

std::optional<ipc::Frame> FakeLauncher::receive(int id) {
  FakeWorker& w = workers.at(id);
  char buf[65536];
  ssize_t n;
  while ((n = ::read(w.in.get(), buf, sizeof buf)) > 0) w.reader.feed(buf, static_cast<std::size_t>(n));
  return w.reader.next();
}

void FakeLauncher::exit(int id, int wait_status) {
  FakeWorker& w = workers.at(id);
  if (!w.alive) return;
  w.alive = false;
  w.out.reset();  // EOF on main's side, like a process that died
  pid_t pid = w.pid;
  loop_.defer([this, pid, wait_status] { events_.exited(pid, wait_status); });
}

}  // namespace dispatcherd::testing
