#pragma once
// What `ps` shows for a process: workers say which task they are running.
//
// Linux has no setproctitle(3): like PostgreSQL and nginx, we reuse the memory that holds
// argv (and the environment strings right after it), after moving the environment to the
// heap. Call init() once in main before anything forks; the zygote and the workers inherit
// the claimed area and each writes its own title into its copy.

#include <cstddef>
#include <span>
#include <string_view>

namespace dispatcherd::process_title {

/// Claims argv's string area (and the contiguous environment strings) for titles; copies the
/// environment to the heap first so getenv/setenv keep working. Later calls do nothing.
void init(int argc, char** argv);

/// Shows `title` in /proc/self/cmdline (and so in ps/top), truncated to the claimed area.
/// Does nothing before init(). Async-signal-unsafe; no allocation.
void set(std::string_view title);

/// Writes `title` into `area` so that the kernel reports exactly the title: the text, a NUL,
/// then non-NUL filler up to the end (a non-NUL last byte tells Linux that the area was
/// rewritten, and it then stops at the first NUL). Returns the bytes of title kept.
/// Exposed for unit tests; set() uses it on the claimed area.
std::size_t write_title(std::span<char> area, std::string_view title);

}  // namespace dispatcherd::process_title
