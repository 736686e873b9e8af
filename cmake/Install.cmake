# `cmake --install`: the two binaries, the public header, libdispatcherd.a and a CMake package
# so that an application does
#   find_package(dispatcherd REQUIRED)
#   target_link_libraries(app PRIVATE dispatcherd::dispatcherd)   # library mode
#   target_link_libraries(mytasks PRIVATE dispatcherd::headers)   # a task library (MODULE)
#
#   <prefix>/bin/dispatcherd, bin/dispatcherctl
#   <prefix>/include/dispatcherd/task.h            (includes only std and nlohmann/json)
#   <prefix>/lib/libdispatcherd.a
#   <prefix>/lib/cmake/dispatcherd/dispatcherd{Config,ConfigVersion,Targets*}.cmake
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS dispatcherd dispatcherctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS dispatcherd_archive dispatcherd_library dispatcherd_headers
  EXPORT dispatcherdTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
# Only the public API: every other header under common/include is private to this build.
install(FILES ${PROJECT_SOURCE_DIR}/common/include/dispatcherd/task.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dispatcherd)

set(DISPATCHERD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dispatcherd)
install(EXPORT dispatcherdTargets NAMESPACE dispatcherd:: DESTINATION ${DISPATCHERD_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/dispatcherdConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/dispatcherdConfig.cmake INSTALL_DESTINATION ${DISPATCHERD_CMAKE_DIR})
# 0.x: a minor release may change the task ABI (kTaskAbiVersion), so only x.y.* matches.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/dispatcherdConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/dispatcherdConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/dispatcherdConfigVersion.cmake DESTINATION ${DISPATCHERD_CMAKE_DIR})
