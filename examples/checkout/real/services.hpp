#pragma once
// The three real-mode services' main()s (services.cpp, compiled once for the three executables).
namespace checkout {
int run_order_service(int argc, char** argv);
int run_stock_service(int argc, char** argv);
int run_payment_service(int argc, char** argv);
} // namespace checkout
