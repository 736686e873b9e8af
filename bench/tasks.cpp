// bench_tasks: the task library `make bench` loads (extensions.task_libraries).
//  * `bench.stamp` reads CLOCK_REALTIME first thing and appends a StampRecord (its uuid, that
//    time and the publisher's kwargs "t_pub_ns") to the file named by kwargs "file", else by
//    the environment variable BENCH_STAMP_FILE. The file stays open in the worker between
//    tasks, so a task costs one clock read and one write(2).
//  * `bench.hold` keeps its worker busy until the file kwargs "until" exists (inotify on its
//    directory, no polling) or it is cancelled; the bench frees every worker at one moment by
//    creating that file, without a control command.
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dispatcherd/task.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>

#include "stamp_record.h"

DISPATCHERD_TASK_LIBRARY();

namespace {

// The open stamp file of this worker process (workers are forked before any task ran, so each
// opens its own).
struct OpenFile {
  std::string path;
  int fd = -1;
};

int stamp_fd(const std::string& path) {
  static OpenFile f;
  if (f.fd >= 0 && f.path == path) return f.fd;
  if (f.fd >= 0) ::close(f.fd);
  f.fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (f.fd < 0)
    throw std::runtime_error("bench.stamp: cannot open " + path + ": " + std::strerror(errno));
  f.path = path;
  return f.fd;
}

nlohmann::json stamp(dispatcherd::TaskContext& ctx) {
  timespec now{}, mono{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  ::clock_gettime(CLOCK_MONOTONIC, &mono);
  bench::StampRecord r{};
  r.start_ns = static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
  if (ctx.received_at() > 0)
    r.added_ns = static_cast<std::int64_t>(mono.tv_sec) * 1000000000 + mono.tv_nsec -
                 static_cast<std::int64_t>(ctx.received_at() * 1e9);
  std::strncpy(r.uuid, ctx.uuid().c_str(), sizeof(r.uuid) - 1);
  const nlohmann::json& kw = ctx.kwargs();
  if (auto it = kw.find("t_pub_ns"); it != kw.end() && it->is_number_integer())
    r.pub_ns = it->get<std::int64_t>();
  r.worker_id = ctx.worker_id();
  r.pid = static_cast<std::int32_t>(::getpid());
  std::string path;
  if (auto it = kw.find("file"); it != kw.end() && it->is_string()) {
    path = it->get<std::string>();
  } else if (const char* env = std::getenv("BENCH_STAMP_FILE")) {
    path = env;
  }
  if (path.empty())
    throw std::invalid_argument("bench.stamp needs kwargs 'file' or BENCH_STAMP_FILE");
  ssize_t n;
  do {
    n = ::write(stamp_fd(path), &r, sizeof r);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof r)) throw std::runtime_error("bench.stamp: short write");
  return nullptr;
}

nlohmann::json hold(dispatcherd::TaskContext& ctx) {
  auto it = ctx.kwargs().find("until");
  if (it == ctx.kwargs().end() || !it->is_string() || it->get_ref<const std::string&>().empty())
    throw std::invalid_argument("bench.hold needs a string kwarg 'until'");
  const std::string& path = it->get_ref<const std::string&>();
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) throw std::runtime_error("bench.hold: inotify_init1 failed");
  // Watch first, then look: a file created in between is not missed.
  if (::inotify_add_watch(fd, dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
    ::close(fd);
    throw std::runtime_error("bench.hold: cannot watch " + dir);
  }
  struct stat st {};
  while (::stat(path.c_str(), &st) != 0) {
    if (ctx.cancelled()) {
      ::close(fd);
      throw dispatcherd::TaskCancelled();
    }
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 100);  // a cancel (SIGUSR1) interrupts it; the timeout is a backstop
    char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
  }
  ::close(fd);
  return nullptr;
}

}  // namespace

DISPATCHERD_TASK("bench.stamp", stamp);
DISPATCHERD_TASK("bench.hold", hold);
