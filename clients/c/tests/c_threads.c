#include <stdio.h>
#include "rspmc.h"
int main(int argc, char **argv) { return 0; }
