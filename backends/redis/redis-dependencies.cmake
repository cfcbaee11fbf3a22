# Finds hiredis for bulwark::redis as bulwark_deps::hiredis; included by the build and installed
# beside the package config for find_package(bulwark COMPONENTS redis). A CMake package comes
# first (hiredis::hiredis: conan's CMakeDeps, vcpkg, hiredis >= 1.0's own install), then
# pkg-config (Debian 12's hiredis 0.14.1 ships only a .pc file).
if(NOT TARGET bulwark_deps::hiredis)
  if(NOT TARGET hiredis::hiredis)
    find_package(hiredis CONFIG QUIET)
  endif()
  add_library(bulwark_deps::hiredis INTERFACE IMPORTED)
  if(TARGET hiredis::hiredis)
    target_link_libraries(bulwark_deps::hiredis INTERFACE hiredis::hiredis)
  else()
    find_package(PkgConfig REQUIRED)
    pkg_check_modules(bulwark_hiredis REQUIRED IMPORTED_TARGET hiredis>=0.14)
    target_link_libraries(bulwark_deps::hiredis INTERFACE PkgConfig::bulwark_hiredis)
  endif()
endif()
