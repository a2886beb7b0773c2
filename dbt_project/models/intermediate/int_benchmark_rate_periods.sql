-- The benchmark (market) lending rate in force on each date, per currency
-- (kpis.md "Benchmark rate on day t"): each seed row is in force from its
-- effective_from until the day before the next one. Before a series' first
-- entry there is no rate (contributes nothing to the subsidy).
select
    currency,
    effective_from as valid_from,
    cast(coalesce(
        {{ add_days(-1, 'lead(effective_from) over (partition by currency order by effective_from)') }},
        {{ end_of_time() }}
    ) as date) as valid_to,
    annual_rate,
    rate_name
from {{ ref('benchmark_rates') }}
