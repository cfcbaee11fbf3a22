# Finds what bulwark::core needs; used both by the build and by the installed package config.
# Each dependency is looked up the same way whether it comes from the system (Debian's -dev
# packages), from conan (CMakeDeps config files) or from vcpkg: the CMake package first, then
# what the system offers without one.
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
# Standalone Asio: conan and vcpkg provide asio::asio; Debian's libasio-dev ships no CMake package,
# and there Asio is one include directory.
if(NOT TARGET bulwark_deps::asio)
  if(NOT TARGET asio::asio)
    find_package(asio CONFIG QUIET)
  endif()
  add_library(bulwark_deps::asio INTERFACE IMPORTED)
  if(TARGET asio::asio)
    target_link_libraries(bulwark_deps::asio INTERFACE asio::asio)
  else()
    find_path(BULWARK_ASIO_INCLUDE_DIR asio.hpp REQUIRED)
    set_target_properties(bulwark_deps::asio PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${BULWARK_ASIO_INCLUDE_DIR}")
  endif()
endif()
