#include "dispatcherd/pool/process_title.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

extern char** environ;

namespace dispatcherd::process_title {
namespace {

struct Area {
  char* begin = nullptr;
  std::size_t size = 0;
  bool claimed = false;
};

Area& area() {
  static Area a;
  return a;
}

// A static that is never destroyed: environ points into the environment's new home for the
// whole life of the process, including exit handlers that run after static destructors.
template <class T>
class Immortal {
 public:
  Immortal() { std::construct_at(reinterpret_cast<T*>(storage_)); }
  T& get() { return *std::launder(reinterpret_cast<T*>(storage_)); }

 private:
  alignas(T) unsigned char storage_[sizeof(T)];
};

std::vector<std::string>& env_strings() {
  static Immortal<std::vector<std::string>> s;
  return s.get();
}
std::vector<char*>& env_pointers() {
  static Immortal<std::vector<char*>> p;
  return p.get();
}

}  // namespace

void init(int argc, char** argv) {
  Area& a = area();
  if (a.claimed || argc <= 0 || argv == nullptr || argv[0] == nullptr) return;
  a.claimed = true;
  // The area runs from argv[0] through every string that directly follows the previous one:
  // the rest of argv, then the environment strings the kernel placed after them.
  char* end = argv[0] + std::strlen(argv[0]) + 1;
  for (int i = 1; i < argc; ++i) {
    if (argv[i] != end) break;
    end = argv[i] + std::strlen(argv[i]) + 1;
  }
  std::size_t env_count = 0;
  while (environ != nullptr && environ[env_count] != nullptr) ++env_count;
  for (std::size_t i = 0; i < env_count; ++i) {
    if (environ[i] != end) break;
    end = environ[i] + std::strlen(environ[i]) + 1;
  }
  // Move the environment out of the way before the title may overwrite its strings.
  auto& strings = env_strings();
  auto& pointers = env_pointers();
  strings.assign(environ, environ + env_count);
  pointers.clear();
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  environ = pointers.data();
  a.begin = argv[0];
  a.size = static_cast<std::size_t>(end - argv[0]);
  // Nothing else may keep pointing into the area: argv[1..] now read as empty strings.
  static char empty[] = "";
  for (int i = 1; i < argc; ++i) argv[i] = empty;
}

std::size_t write_title(std::span<char> area, std::string_view title) {
  if (area.size() < 2) return 0;
  // Keep room for the NUL after the text and the non-NUL marker byte at the very end.
  const std::size_t kept = std::min(title.size(), area.size() - 2);
  std::memcpy(area.data(), title.data(), kept);
  area[kept] = '\0';
  std::fill(area.begin() + static_cast<std::ptrdiff_t>(kept) + 1, area.end(), ' ');
  return kept;
}

void set(std::string_view title) {
  Area& a = area();
  if (a.begin == nullptr) return;
  write_title(std::span<char>(a.begin, a.size), title);
}

}  // namespace dispatcherd::process_title
