-- Peer of the `support_core` step: core.conversations, each mapped to its account (the Intercom company, else
-- its contact's account) and person.

create or replace table core.conversations as
with c as (
    select c.*, coalesce(nullif(regexp_extract(contact_ids, '^\s*\[\s*"?([^",\]\s]+)', 1), ''),
               case when source_author_type in ('user', 'lead', 'contact') then source_author_id end) as contact,
           lower(state) as state_
    from raw_intercom.conversations c where _sophia_deleted is not true)
select 'cnv_ic_' || c.id as conversation_key, c.id as intercom_id, coalesce(ax.account_key, p.account_key) as account_key,
       case when ax.account_key is not null then 'company' when p.account_key is not null then 'contact'
           else 'unmapped' end as account_source,
       px.person_key, ex.employee_key as assignee_employee_key, c.company_id as intercom_company_id,
       c.contact as intercom_contact_id, c.admin_assignee_id as intercom_admin_id, c.team_assignee_id as intercom_team_id,
       c.title, c.state_ as state, c.state_ <> 'closed' as is_open, lower(c.priority) as priority,
       coalesce(lower(c.priority) = 'priority', false) as is_priority, c.source_type, c.created_at, c.updated_at,
       c.first_admin_reply_at as first_response_at, case when c.state_ = 'closed' then c.last_close_at end as closed_at,
       coalesce(c.time_to_admin_reply, round(epoch(c.first_admin_reply_at - c.created_at))::bigint) as first_response_s,
       round(epoch(case when c.state_ = 'closed' then c.last_close_at end - c.created_at))::bigint as time_to_close_s,
       c.time_to_first_close as time_to_first_close_s, c.count_reopens,
       case when c.rating between 1 and 5 then c.rating end as csat_rating,
       case when c.rating between 1 and 5 then c.rating >= 4 end as csat_satisfied, c.rating_remark as csat_remark,
       nullif(trim(regexp_replace(regexp_replace(c.tag_names, '^\s*\[|\]\s*$|"', '', 'g'), '\s*,\s*', ',', 'g')), '')
           as tags
from c
left join core.account_xref ax on ax.system = 'intercom' and ax.system_id = c.company_id
left join core.person_xref px on px.system = 'intercom' and px.system_id = c.contact
left join core.people p on p.person_key = px.person_key
left join core.employee_xref ex on ex.system = 'intercom' and ex.system_id = c.admin_assignee_id
order by c.created_at, conversation_key;
