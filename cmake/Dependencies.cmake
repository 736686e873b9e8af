# Every external dependency is found here and nowhere else. All come from Debian 12 packages;
# scripts/install-deps.sh installs them. The lines are the ones verified in
# shared/reference/cpp-libraries.md §0.
find_package(Threads REQUIRED)
find_package(PostgreSQL 15 REQUIRED)                 # -> PostgreSQL::PostgreSQL (libpq)
find_package(nlohmann_json 3.11 CONFIG REQUIRED)     # -> nlohmann_json::nlohmann_json
find_package(yaml-cpp 0.7 CONFIG REQUIRED)           # -> yaml-cpp (plain name in 0.7)
find_package(CLI11 2.1 CONFIG REQUIRED)              # -> CLI11::CLI11
if(DISPATCHERD_BUILD_TESTS)
  find_package(GTest 1.12 CONFIG REQUIRED)           # -> GTest::gtest, GTest::gtest_main
  include(GoogleTest)
endif()
