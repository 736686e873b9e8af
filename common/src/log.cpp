#include "dispatcherd/log.h"

#include <poll.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "json_text.h"

namespace dispatcherd::log {
namespace detail {
namespace {
std::atomic<int> local_threshold{static_cast<int>(Level::Info)};
}
std::atomic<int>* threshold = &local_threshold;
}  // namespace detail

namespace {

constexpr std::size_t kMaxPending = 1 << 20;  // 1 MiB of lines kept while the output stalls

struct State {
  Format format = Format::Text;
  int fd = 1;
  std::string process = "main";
  std::string pending;
  std::uint64_t dropped = 0;
};

State& state() {
  static State s;
  return s;
}

// Writes as much of `data` as the fd takes without blocking; returns the bytes written.
std::size_t write_some(int fd, std::string_view data) {
  std::size_t done = 0;
  while (done < data.size()) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 0) <= 0 || !(p.revents & POLLOUT)) break;
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return data.size();  // a broken output: nothing more can be done, drop silently
    }
    done += static_cast<std::size_t>(n);
  }
  return done;
}

// Appends a message to a text log line so that no input can forge lines or reach a terminal
// raw: invalid UTF-8 becomes U+FFFD, control bytes other than tab become \xNN, and a newline
// is kept but indents what follows (a continuation never looks like a line of its own).
void append_safe(std::string& line, std::string_view message) {
  bool plain = true;
  for (unsigned char c : message) plain = plain && c >= 0x20 && c < 0x7f;
  if (plain) {
    line += message;
    return;
  }
  static const char* hex = "0123456789abcdef";
  for (unsigned char c : text::sanitize_utf8(message)) {
    if (c == '\n') {
      line += "\n    ";
    } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
      line += "\\x";
      line += hex[c >> 4];
      line += hex[c & 15];
    } else {
      line += static_cast<char>(c);
    }
  }
}

void timestamp(char* buf, std::size_t size) {
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  tm t{};
  ::gmtime_r(&tv.tv_sec, &t);
  std::snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1,
                t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<int>(tv.tv_usec / 1000));
}

}  // namespace

void set_level(Level l) {
  detail::threshold->store(static_cast<int>(l));
}
Level level() {
  return static_cast<Level>(detail::threshold->load());
}

void share_level_with_children() {
  static_assert(std::atomic<int>::is_always_lock_free, "shared across processes");
  if (detail::threshold != &detail::local_threshold) return;
  // One anonymous shared page, inherited across fork; never unmapped (the pointer lives as
  // long as the process). Failure keeps the process-local threshold, logged once.
  void* page = ::mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    write(Level::Warning, "log level not shared with workers: mmap failed");
    return;
  }
  detail::threshold =
      std::construct_at(static_cast<std::atomic<int>*>(page), detail::local_threshold.load());
}
void set_format(Format f) {
  state().format = f;
}
void set_fd(int fd) {
  state().fd = fd;
}
void set_process_name(std::string_view name) {
  state().process = std::string(name);
}

std::string_view level_name(Level l) {
  switch (l) {
    case Level::Debug:
      return "DEBUG";
    case Level::Info:
      return "INFO";
    case Level::Warning:
      return "WARNING";
    case Level::Error:
      return "ERROR";
    case Level::Critical:
      return "CRITICAL";
  }
  return "INFO";
}

std::optional<Level> parse_level(std::string_view name) {
  std::string up;
  for (char c : name) up += static_cast<char>((c >= 'a' && c <= 'z') ? c - 32 : c);
  if (up == "DEBUG") return Level::Debug;
  if (up == "INFO") return Level::Info;
  if (up == "WARNING" || up == "WARN") return Level::Warning;
  if (up == "ERROR") return Level::Error;
  if (up == "CRITICAL" || up == "FATAL") return Level::Critical;
  return std::nullopt;
}

void write(Level l, std::string_view message) {
  State& s = state();
  char ts[96];
  timestamp(ts, sizeof ts);
  std::string line;
  if (s.format == Format::Json) {
    nlohmann::json j = {{"ts", ts},
                        {"level", level_name(l)},
                        {"process", s.process},
                        {"pid", ::getpid()},
                        {"msg", message}};
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line.reserve(message.size() + 64);
    line += ts;
    line += ' ';
    line += level_name(l);
    line += " [";
    line += s.process;
    line += ' ';
    line += std::to_string(::getpid());
    line += "] ";
    append_safe(line, message);
  }
  line += '\n';

  if (!s.pending.empty()) flush_pending();
  if (s.pending.empty()) {
    std::size_t n = write_some(s.fd, line);
    if (n == line.size()) return;
    line.erase(0, n);
  }
  if (s.pending.size() + line.size() > kMaxPending) {
    ++s.dropped;
    return;
  }
  s.pending += line;
}

void flush_pending() {
  State& s = state();
  if (s.pending.empty()) return;
  std::size_t n = write_some(s.fd, s.pending);
  s.pending.erase(0, n);
}

std::size_t pending_bytes() {
  return state().pending.size();
}
std::uint64_t dropped_lines() {
  return state().dropped;
}

}  // namespace dispatcherd::log
