cmake_minimum_required(VERSION 3.25) # script mode: IN_LIST and other new-policy behaviour
# Installs the build tree into WORK_DIR/prefix, then configures, builds and runs the consumer
# project against it with find_package(bulwark) and every component the tree installed.
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "install failed")
endif()
# EXPECTED: the components the tree built (comma-separated); each must have been installed.
string(REPLACE "," ";" expected "${EXPECTED}")
file(GLOB component_files ${WORK_DIR}/prefix/${LIBDIR}/cmake/bulwark/bulwark-*-targets.cmake)
set(components)
foreach(f IN LISTS component_files)
  get_filename_component(name ${f} NAME)
  string(REGEX REPLACE "^bulwark-(.*)-targets.cmake$" "\\1" c ${name})
  list(APPEND components ${c})
endforeach()
# bulwark::http lives in the main export set (its headers are installed with the core's).
file(READ ${WORK_DIR}/prefix/${LIBDIR}/cmake/bulwark/bulwark-targets.cmake main_targets)
if(main_targets MATCHES "add_library\\(bulwark::http ")
  list(APPEND components http)
endif()
foreach(c IN LISTS expected)
  if(NOT c IN_LIST components)
    message(FATAL_ERROR "component ${c} was built but not installed under ${WORK_DIR}/prefix/${LIBDIR}/cmake/bulwark")
  endif()
endforeach()
message(STATUS "consumer: components ${components}")
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build -G Ninja
                        -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix "-DBULWARK_COMPONENTS=${components}"
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configure against the installed package failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "build against the installed package failed")
endif()
execute_process(COMMAND ${WORK_DIR}/build/consumer RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
message(STATUS "${out}")
if(rc)
  message(FATAL_ERROR "consumer failed")
endif()
# pkg-config sees the package too.
find_program(PKG_CONFIG pkg-config)
if(PKG_CONFIG)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${WORK_DIR}/prefix/${DATADIR}/pkgconfig
                          ${PKG_CONFIG} --cflags bulwark RESULT_VARIABLE rc OUTPUT_VARIABLE cflags)
  if(rc OR NOT cflags MATCHES "-I[^ ]*/include")
    message(FATAL_ERROR "pkg-config --cflags bulwark: '${cflags}'")
  endif()
endif()
message(STATUS "consumer: find_package(bulwark COMPONENTS ${components}) and pkg-config ok")
