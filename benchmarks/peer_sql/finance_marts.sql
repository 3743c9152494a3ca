-- Peer of the `finance_marts` step: marts.revenue (core.revenue with the account's dimensions) and marts.arr
-- (month × segment × region ARR bridge). Left to the pandas step only: budget vs actual and cash.

create or replace table marts.revenue as
select r.*, a.name as account_name, coalesce(a.segment, 'Unknown') as segment, coalesce(a.region, 'Unknown') as region,
       coalesce(a.country, 'Unknown') as country, coalesce(a.industry, 'Unknown') as industry
from core.revenue r left join core.accounts a using (account_key);

create or replace table marts.arr as
select month, segment, region, sum(previous_arr) as opening_arr, sum(new_arr) as new_arr,
       sum(expansion_arr) as expansion_arr, sum(contraction_arr) as contraction_arr, sum(churned_arr) as churned_arr,
       sum(reactivation_arr) as reactivation_arr, sum(arr) as closing_arr, count(*) filter (where is_active) as customers,
       count(*) filter (where movement = 'new') as new_customers, count(*) filter (where movement = 'churn')
           as churned_customers, count(*) filter (where movement = 'reactivation') as reactivated_customers,
       sum(recognized_revenue) as recognized_revenue
from marts.revenue group by all order by all;
