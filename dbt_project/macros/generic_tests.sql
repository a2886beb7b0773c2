{#- Generic tests written here because the project installs no packages
    (no internet at run time). -#}

{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{% test in_range(model, column_name, min_value=none, max_value=none) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null and (
    1 = 0
    {% if min_value is not none %} or {{ column_name }} < {{ min_value }}{% endif %}
    {% if max_value is not none %} or {{ column_name }} > {{ max_value }}{% endif %}
)
{% endtest %}

{#- valid_from <= valid_to and no two periods of one key overlap -#}
{% test non_overlapping_periods(model, partition_by, valid_from='valid_from', valid_to='valid_to') %}
with ordered as (
    select
        {{ partition_by | join(', ') }},
        {{ valid_from }} as valid_from,
        {{ valid_to }} as valid_to,
        lead({{ valid_from }}) over (partition by {{ partition_by | join(', ') }} order by {{ valid_from }}) as next_from
    from {{ model }}
)
select *
from ordered
where valid_from > valid_to or next_from <= valid_to
{% endtest %}
