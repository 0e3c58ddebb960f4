#include "snmp.h"

gk_snmp gk_stats;
