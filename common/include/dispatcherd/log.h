#pragma once
// The logger: levels settable at run time, plain text or JSON lines, one write(2) per line.
//
// Writing never blocks the caller for long: when the output (a pipe, a stalled terminal)
// cannot take a line right now, the line is kept in a bounded in-memory backlog that the
// event loop flushes with flush_pending(); past the bound, lines are dropped and counted.
// Safe to use in a forked child (no stdio buffer, no threads).
//
//   LOG_INFO("worker " << id << " started, pid=" << pid);
//
// The stream expression is evaluated only when the level is enabled.

#include <cstdint>
#include <atomic>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace dispatcherd::log {

/// Severity, numbered like Python's logging levels so `set_log_level` can accept ints.
enum class Level : int { Debug = 10, Info = 20, Warning = 30, Error = 40, Critical = 50 };

/// Output shape of each line.
enum class Format { Text, Json };

/// Lines below `level` are discarded.
void set_level(Level level);
/// The current threshold.
Level level();
/// Moves the threshold into memory shared with every process forked afterwards, so that a
/// later set_level (SIGHUP, `set_log_level`) in main reaches the zygote and all workers at
/// once. Call once, before forking; the threshold keeps its value.
void share_level_with_children();
/// True when a line at `l` would be written.
inline bool enabled(Level l);

/// Selects text or JSON lines.
void set_format(Format format);
/// Writes to `fd` from now on (default 1, stdout). The fd is not owned.
void set_fd(int fd);
/// Names the process in every line, e.g. "main" or "worker-3".
void set_process_name(std::string_view name);

/// Upper-case name of a level ("DEBUG", ...).
std::string_view level_name(Level l);
/// Parses a level name, case-insensitively, accepting WARN and FATAL as aliases.
std::optional<Level> parse_level(std::string_view name);

/// Formats and writes one record (use the LOG_* macros instead).
void write(Level l, std::string_view message);
/// Tries to write the backlog kept while the output was stalled; called by the event loop.
void flush_pending();
/// Bytes still waiting in the backlog.
std::size_t pending_bytes();
/// Lines dropped because the backlog was full.
std::uint64_t dropped_lines();

/// Internal: collects one record's text and writes it on destruction.
class Line {
 public:
  explicit Line(Level l) : level_(l) {}
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  ~Line() { write(level_, os.str()); }
  std::ostringstream os;

 private:
  Level level_;
};

namespace detail {
extern std::atomic<int>* threshold;
}
inline bool enabled(Level l) {
  return static_cast<int>(l) >= detail::threshold->load(std::memory_order_relaxed);
}

}  // namespace dispatcherd::log

#define DISPATCHERD_LOG(lvl, expr)                                 \
  do {                                                             \
    if (::dispatcherd::log::enabled(lvl)) {                        \
      ::dispatcherd::log::Line dispatcherd_log_line_(lvl);         \
      dispatcherd_log_line_.os << expr; /* NOLINT */               \
    }                                                              \
  } while (0)
#define LOG_DEBUG(expr) DISPATCHERD_LOG(::dispatcherd::log::Level::Debug, expr)
#define LOG_INFO(expr) DISPATCHERD_LOG(::dispatcherd::log::Level::Info, expr)
#define LOG_WARNING(expr) DISPATCHERD_LOG(::dispatcherd::log::Level::Warning, expr)
#define LOG_ERROR(expr) DISPATCHERD_LOG(::dispatcherd::log::Level::Error, expr)
#define LOG_CRITICAL(expr) DISPATCHERD_LOG(::dispatcherd::log::Level::Critical, expr)

/// Logs a programming error and aborts; for impossible states, never for bad input.
#define DISPATCHERD_ASSERT(cond)                                                         \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      LOG_CRITICAL("assertion failed: " #cond " at " << __FILE__ << ":" << __LINE__);    \
      ::abort();                                                                         \
    }                                                                                    \
  } while (0)
