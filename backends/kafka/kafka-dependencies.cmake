# Finds librdkafka (C API) for bulwark::kafka as bulwark_deps::rdkafka; used by the build and by
# installed consumers. A CMake package comes first (RdKafka::rdkafka: conan's CMakeDeps, vcpkg,
# librdkafka's own CMake install), then pkg-config (Debian: rdkafka.pc).
if(NOT TARGET bulwark_deps::rdkafka)
  if(NOT TARGET RdKafka::rdkafka)
    find_package(RdKafka CONFIG QUIET)
  endif()
  add_library(bulwark_deps::rdkafka INTERFACE IMPORTED)
  if(TARGET RdKafka::rdkafka)
    target_link_libraries(bulwark_deps::rdkafka INTERFACE RdKafka::rdkafka)
  else()
    find_package(PkgConfig REQUIRED)
    pkg_check_modules(bulwark_rdkafka REQUIRED IMPORTED_TARGET rdkafka>=2.0)
    target_link_libraries(bulwark_deps::rdkafka INTERFACE PkgConfig::bulwark_rdkafka)
  endif()
endif()
