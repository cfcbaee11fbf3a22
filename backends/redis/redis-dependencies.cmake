# Finds hiredis (0.14.1 on Debian 12) for bulwark::redis; included by the build and installed
# beside the package config for find_package(bulwark COMPONENTS redis).
find_package(PkgConfig REQUIRED)
if(NOT TARGET PkgConfig::hiredis)
  pkg_check_modules(hiredis REQUIRED IMPORTED_TARGET GLOBAL hiredis>=0.14)
endif()
