# Finds what bulwark::core needs; used both by the build and by the installed package config.
include(CMakeFindDependencyMacro)
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
# Debian's libasio-dev ships no CMake package: standalone Asio is one include directory.
if(NOT TARGET bulwark_deps::asio)
  find_path(BULWARK_ASIO_INCLUDE_DIR asio.hpp REQUIRED)
  add_library(bulwark_deps::asio INTERFACE IMPORTED)
  set_target_properties(bulwark_deps::asio PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${BULWARK_ASIO_INCLUDE_DIR}")
endif()
