// bench_exec_stamp: writes CLOCK_REALTIME in nanoseconds (decimal) to STAMP_FILE, then execs
// PROGRAM in its place (same pid), so `make bench` can time exec → first on-start task.
//
//   bench_exec_stamp STAMP_FILE PROGRAM [ARGS...]
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_exec_stamp STAMP_FILE PROGRAM [ARGS...]\n");
    return 2;
  }
  int fd = ::open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror(argv[1]);
    return 1;
  }
  // The file is open already: between this stamp and execv there is one pwrite (a few µs).
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const std::string t = std::to_string(now.tv_sec * 1000000000LL + now.tv_nsec) + "\n";
  if (::pwrite(fd, t.data(), t.size(), 0) != static_cast<ssize_t>(t.size())) {
    std::perror("write");
    return 1;
  }
  ::execv(argv[2], argv + 2);
  std::perror(argv[2]);
  return 127;
}
